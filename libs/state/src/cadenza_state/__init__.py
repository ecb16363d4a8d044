"""Cadenza state adapters: PostgreSQL/SQLite (truth), Redis (hot), MinIO/local (objects)."""

from cadenza_state.db import alembic_config, create_engine, migrate, session_factory
from cadenza_state.hot import HotState, create_redis
from cadenza_state.models import (
    TERMINAL_RUN_STATUSES,
    TERMINAL_TASK_STATUSES,
    AgentRecord,
    AuditLogEntry,
    Base,
    LLMCallRecord,
    OutboxMessage,
    ReferenceRecord,
    RunRecord,
    RunStatus,
    TaskAttemptRecord,
    TaskRecord,
    TaskStatus,
    ToolCallRecord,
    ToolEffectRecord,
    WorkflowRecord,
)
from cadenza_state.objects import (
    InvalidObjectKey,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    create_object_store,
    validate_key,
)
from cadenza_state.outbox import (
    add_to_outbox,
    claim_unpublished,
    mark_published,
    purge_published,
)
from cadenza_state.runtime import StateRuntime, open_state
from cadenza_state.settings import StateSettings
from cadenza_state.types import JSONType, UTCDateTime, utcnow

__all__ = [
    "TERMINAL_RUN_STATUSES",
    "TERMINAL_TASK_STATUSES",
    "AgentRecord",
    "AuditLogEntry",
    "Base",
    "HotState",
    "InvalidObjectKey",
    "JSONType",
    "LLMCallRecord",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "OutboxMessage",
    "ReferenceRecord",
    "RunRecord",
    "RunStatus",
    "S3ObjectStore",
    "StateRuntime",
    "StateSettings",
    "TaskAttemptRecord",
    "TaskRecord",
    "TaskStatus",
    "ToolCallRecord",
    "ToolEffectRecord",
    "UTCDateTime",
    "WorkflowRecord",
    "add_to_outbox",
    "alembic_config",
    "claim_unpublished",
    "create_engine",
    "create_object_store",
    "create_redis",
    "mark_published",
    "migrate",
    "open_state",
    "purge_published",
    "session_factory",
    "utcnow",
    "validate_key",
]
