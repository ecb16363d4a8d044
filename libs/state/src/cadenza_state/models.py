"""Typed ORM models. Table and column names are a contract other packages code against;
change them only with a new Alembic revision."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from cadenza_state.types import BigIntPK, JSONType, UTCDateTime, utcnow

# Deterministic constraint names: Alembic (and SQLite batch mode) need them to alter later.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Stopped because a token or USD budget (task, run or tenant) ran out: see docs/guardrails.md.
    BUDGET_EXCEEDED = "budget_exceeded"
    # Held by a budget with ``on_exceeded: pause``: waits for an operator to raise the limit
    # and resume it (POST /v1/runs/{id}/resume). Not terminal.
    PAUSED = "paused"


class TaskStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # Failed, but its on_failure fallback succeeded: dependants see the fallback's output.
    RECOVERED = "recovered"
    # Held for a person (docs/guardrails.md): no worker runs it until the hold is answered.
    AWAITING_APPROVAL = "awaiting_approval"
    IN_DOUBT = "in_doubt"
    # Its LLM call could not reserve a budget with ``on_exceeded: pause``: dispatched again
    # when the run is resumed.
    PAUSED = "paused"


HELD_TASK_STATUSES = frozenset(
    {TaskStatus.AWAITING_APPROVAL, TaskStatus.IN_DOUBT, TaskStatus.PAUSED}
)
"""Open tasks waiting for a person (an approval, an effect left in doubt, a budget raise)."""


TERMINAL_RUN_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.BUDGET_EXCEEDED}
)
STOPPED_RUN_STATUSES = frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.BUDGET_EXCEEDED})
"""Terminal statuses reached before every task finished: open tasks are cancelled and
running workers told to stop."""
TERMINAL_TASK_STATUSES = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.RECOVERED,
    }
)


def _uuid_str() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def _created_at() -> Mapped[datetime]:
    return mapped_column(default=utcnow, server_default=func.now())


class WorkflowRecord(Base):
    """One immutable version of a workflow spec."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()


class RunRecord(Base):
    """A workflow run (the `plan` of the event contract: runs.id is the plan id)."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index(None, "tenant_id", "status", "created_at"),
        # Retention's scan, oldest finished first (only finished runs have an entry).
        Index(
            None,
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
            sqlite_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=_uuid_str)
    tenant_id: Mapped[str] = mapped_column(String(128))
    workflow_name: Mapped[str] = mapped_column(String(255))
    # NULL for inline specs submitted with the run instead of a registered version.
    workflow_version: Mapped[int | None] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(32), default=RunStatus.PENDING.value)
    output: Mapped[Any | None] = mapped_column(JSONType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # Limits given with the run request ({max_tokens, max_usd, on_exceeded}); the workers
    # apply them with the workflow's own `budget` (the tighter of the two wins).
    budget: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # What started the run when it was not an API call: a trigger's event (trigger, topic,
    # partition, offset, event id…) or a schedule's tick (schedule, fire time). NULL = API.
    started_by: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    finished_at: Mapped[datetime | None]
    # Moved on by one with every write of the run's state by the orchestrator: a batch that
    # read the run without its lock writes only while it is still what it read
    # (docs/orchestrator.md, "Applying a batch without a lock").
    version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Lineage (docs/replay.md): the run this one reran or forked, what was asked (kind,
    # from tasks, overrides) and what the orchestrator may reuse (outputs by task, with the
    # cache key each was recorded under; per-task agent overrides).
    parent_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    lineage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    replay: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    # Relationships tell the unit of work to insert parents first; lazy="raise" because an
    # implicit lazy load cannot run under asyncio (use selectinload()).
    tasks: Mapped[list[TaskRecord]] = relationship(
        back_populates="run", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class DeletedRunRecord(Base):
    """A tombstone: the run of this id was deleted by retention, so the API answers 410 Gone
    (with when and why) instead of 404. Written in the transaction that deletes the run;
    kept as long as the audit log, a few dozen bytes a run."""

    __tablename__ = "deleted_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    finished_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime] = _created_at()
    reason: Mapped[str] = mapped_column(String(64))


class TaskRecord(Base):
    """One executable task instance: a spec node, or one item of a fan-out node."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("run_id", "node_id", "item_index"),
        # NULLs are distinct in a unique constraint, so the non-fan-out case needs its own
        # partial unique index to keep (run_id, node_id) unique.
        Index(
            "uq_tasks_run_id_node_id_single",
            "run_id",
            "node_id",
            unique=True,
            postgresql_where=text("item_index IS NULL"),
            sqlite_where=text("item_index IS NULL"),
        ),
        # The orchestrator asks "is anything left in this run?" after every result, and the
        # sweeper scans dispatched tasks: partial indexes keep both independent of history.
        Index(
            "ix_tasks_run_id_open",
            "run_id",
            postgresql_where=text("status IN ('pending', 'ready', 'running')"),
            sqlite_where=text("status IN ('pending', 'ready', 'running')"),
        ),
        Index(
            "ix_tasks_status_dispatched",
            "status",
            "ready_at",
            postgresql_where=text("status IN ('ready', 'running')"),
            sqlite_where=text("status IN ('ready', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # No index of its own: the unique (run_id, node_id, item_index) leads with it.
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(255))
    item_index: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default=TaskStatus.PENDING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer)
    input: Mapped[Any | None] = mapped_column(JSONType)
    output: Mapped[Any | None] = mapped_column(JSONType)
    # Claim-check: object-store key of an output too large for the row / the event.
    output_ref: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Who runs the current attempt and when it last proved alive (stale → re-dispatch).
    worker_id: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    ready_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    # What determines the output (task spec, rendered params, agent overrides), hashed; a
    # rerun or fork reuses a recorded output only under the same key.
    cache_key: Mapped[str | None] = mapped_column(String(64))
    # The task (of the parent run) whose recorded output this one reused instead of running.
    reused_from: Mapped[str | None] = mapped_column(String(255))

    run: Mapped[RunRecord] = relationship(back_populates="tasks", lazy="raise")
    attempts: Mapped[list[TaskAttemptRecord]] = relationship(
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TaskAttemptRecord.attempt",
    )
    tool_effects: Mapped[list[ToolEffectRecord]] = relationship(
        lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class TaskAttemptRecord(Base):
    """The recorded result of one attempt; the primary key makes recording exactly-once."""

    __tablename__ = "task_attempts"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class OutboxMessage(Base):
    """An event written in the same transaction as the state change that caused it."""

    __tablename__ = "outbox"
    # A published row is deleted (``delete_published``): the table holds only the rows in
    # flight, so the primary key is all a relay's scan needs.

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(255))
    headers: Mapped[list[list[str]]] = mapped_column(JSONType, default=list)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()
    published_at: Mapped[datetime | None]
    publisher: Mapped[str | None] = mapped_column(String(64))
    """The process that publishes this row itself right after its commit (relays leave it
    alone for a grace period); NULL: the relay publishes it."""

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        """Headers in the (name, bytes) form Kafka clients take."""
        return [(name, value.encode()) for name, value in self.headers]


EFFECT_SENT = "sent"
"""A non-idempotent call about to be made (or made, its result not yet recorded)."""
EFFECT_DONE = "done"


class ToolEffectRecord(Base):
    """A tool side effect, recorded once per (task, attempt, call index). A non-idempotent
    call is journaled ``sent`` before it is made and ``done`` with its result after: a
    ``sent`` row found later means the effect is in doubt."""

    __tablename__ = "tool_effects"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    tool: Mapped[str] = mapped_column(String(255))
    result: Mapped[Any | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default=EFFECT_DONE, server_default="done")
    created_at: Mapped[datetime] = _created_at()


class HoldKind(StrEnum):
    APPROVAL = "approval"  # a risky tool call waiting for a person's yes or no
    IN_DOUBT = "in_doubt"  # a non-idempotent call that may or may not have happened


class HoldStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"  # approval: make the call
    REJECTED = "rejected"  # approval: the model is told no
    EXPIRED = "expired"  # approval: nobody answered in time (its on_timeout applies)
    DONE = "done"  # in doubt: it happened; ``output`` is its result
    RETRY = "retry"  # in doubt: it did not happen; make the call again
    CANCELLED = "cancelled"  # the run was cancelled while it waited


class ApprovalRecord(Base):
    """A held tool call (approval or in doubt): what was asked, and who answered what.

    The orchestrator writes the request (with the task's status, from the worker's result);
    the decision is written by the gateway (a person) or the orchestrator's sweeper (the
    timeout), each only while ``status`` is ``pending`` under the row's lock."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt", "call_index", "kind"),
        Index(None, "tenant_id", "status", "created_at"),
        Index(
            "ix_approvals_pending_expiry",
            "expires_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[str] = mapped_column(String(255), index=True)
    node_id: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer)
    call_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.PENDING.value)
    tool: Mapped[str] = mapped_column(String(255))
    arguments: Mapped[Any | None] = mapped_column(JSONType)
    reason: Mapped[str | None] = mapped_column(String(4000))
    rule: Mapped[str | None] = mapped_column(String(1000))
    on_timeout: Mapped[str] = mapped_column(String(16), default="reject")
    expires_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(String(4000))
    output: Mapped[Any | None] = mapped_column(JSONType)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()


class DeadLetterStatus(StrEnum):
    PENDING = "pending"
    REPLAYED = "replayed"
    DISCARDED = "discarded"


class DeadLetterRecord(Base):
    """A message a consumer gave up on, kept from the ``dlq`` topic for inspection and
    replay (the original record: topic, key, headers and bytes)."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("original_topic", "partition", "offset", "consumer_group"),
        Index(None, "tenant_id", "status", "id"),
        # Run history retention deletes resolved letters, oldest first (pending ones have
        # no entry: they wait for an operator, whatever their age).
        Index(
            None,
            "resolved_at",
            postgresql_where=text("resolved_at IS NOT NULL"),
            sqlite_where=text("resolved_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    original_topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    consumer_group: Mapped[str] = mapped_column(String(255))
    key: Mapped[str | None] = mapped_column(String(1024))
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(4000))
    error_code: Mapped[str] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str | None] = mapped_column(String(255))
    run_id: Mapped[str | None] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(255))
    failed_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=DeadLetterStatus.PENDING.value)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()


class AuditLogEntry(Base):
    """Who did what to which subject (append-only)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(1024))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()


class ApiKeyRecord(Base):
    """An API key: bound to one tenant, with scopes. Only a hash of its secret is stored;
    ``id`` is the public part shown in listings (``cdz_<id>_…``)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index(None, "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    # The key this one replaced (rotation keeps the chain for the audit trail).
    rotated_from: Mapped[str | None] = mapped_column(String(32))


class TenantBudgetRecord(Base):
    """A tenant's spending limit for one calendar period (UTC day or month), set through
    ``PUT /v1/tenants/{id}/budget``. Spend is the sum of ``llm_calls`` in the period."""

    __tablename__ = "tenant_budgets"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)  # "day" | "month"
    max_tokens: Mapped[int | None] = mapped_column(BigInteger)
    max_usd: Mapped[float | None] = mapped_column(Float)
    on_exceeded: Mapped[str] = mapped_column(String(16), default="stop")
    updated_by: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class ProviderKeyRecord(Base):
    """A tenant's own OpenAI-compatible endpoint and key (BYOK). The key is stored only
    envelope-encrypted (see ``cadenza_state.secrets``) and is never returned by the API."""

    __tablename__ = "provider_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    base_url: Mapped[str] = mapped_column(String(1024))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class EvaluationRecord(Base):
    """One run of an evaluation suite (`cadenza eval`): its cases' scores per agent version
    and the regressions found comparing two versions."""

    __tablename__ = "evaluations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(128), index=True)
    suite: Mapped[str] = mapped_column(String(256))
    agent: Mapped[str | None] = mapped_column(String(256))
    against: Mapped[str | None] = mapped_column(String(256))
    passed: Mapped[bool] = mapped_column()
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType)
    results: Mapped[list[Any]] = mapped_column(JSONType)
    regressions: Mapped[list[Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()


class AgentRecord(Base):
    """One immutable version of an agent definition (prompt, model, tools, limits)."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()


class LLMCallRecord(Base):
    """One LLM turn of an agent task attempt: what was sent, what came back, what it cost.

    (task_id, attempt, turn) is unique so a turn replayed from a checkpoint is recorded once.
    """

    __tablename__ = "llm_calls"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt", "turn"),
        Index(None, "run_id"),
        Index(None, "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    turn: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(255))
    agent_version: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    started_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()


class ToolCallRecord(Base):
    """One tool call an agent made (or was refused): arguments, truncated result, latency."""

    __tablename__ = "tool_calls"
    __table_args__ = (
        UniqueConstraint("task_id", "attempt", "call_index"),
        Index(None, "run_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    turn: Mapped[int] = mapped_column(Integer)
    call_index: Mapped[int] = mapped_column(Integer)
    call_id: Mapped[str | None] = mapped_column(String(255))
    agent: Mapped[str] = mapped_column(String(255))
    tool: Mapped[str] = mapped_column(String(255))
    arguments: Mapped[Any | None] = mapped_column(JSONType)
    result: Mapped[Any | None] = mapped_column(JSONType)
    # ok | error | refused (outside the agent's allowlist) | timeout
    status: Mapped[str] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(2048))
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()


class ReferenceRecord(Base):
    """A tenant's reference data that tools read (transactions, PSP status, customers…),
    loaded by operators per dataset and looked up by key."""

    __tablename__ = "reference_records"

    tenant_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    data: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    INDEXED = "indexed"
    FAILED = "failed"


class CollectionRecord(Base):
    """A tenant's named set of documents searched together (one Qdrant collection)."""

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = _created_at()


class DocumentRecord(Base):
    """A document of a collection and where its ingestion stands.

    ``content_hash`` is the sha256 of the latest content received; ``indexed_hash`` that of
    the content whose chunks are in the vector store (equal hashes = nothing to embed).
    """

    __tablename__ = "documents"
    __table_args__ = (Index(None, "tenant_id", "collection", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=_uuid_str)
    tenant_id: Mapped[str] = mapped_column(String(128))
    collection: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(512))
    content_type: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    object_ref: Mapped[str] = mapped_column(String(1024))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    indexed_hash: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default=DocumentStatus.QUEUED.value)
    error: Mapped[str | None] = mapped_column(String(2048))
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    # The vector-store generation readers may see (set when an ingest completes): chunks
    # of any other generation are a replacement in flight or left-overs, hidden.
    generation: Mapped[int | None] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    indexed_at: Mapped[datetime | None]


class TriggerRecord(Base):
    """One immutable version of a trigger: which upstream events start which workflow. The
    latest version of a name is the one in force; the tenant is the one that registered it."""

    __tablename__ = "triggers"
    __table_args__ = (UniqueConstraint("tenant_id", "name", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()


class TriggeredEventRecord(Base):
    """The dedupe ledger: one row per (tenant, trigger name, dedupe key), inserted in the
    transaction that creates the run, so a redelivered or replayed event never starts a
    second run (the unique constraint refuses it)."""

    __tablename__ = "triggered_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "trigger_name", "dedupe_key"),
        # The trigger service's ledger retention, oldest first.
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(128))
    trigger_name: Mapped[str] = mapped_column(String(255))
    dedupe_key: Mapped[str] = mapped_column(String(512))
    run_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = _created_at()


class ScheduleRecord(Base):
    """A cron schedule of a workflow. ``next_fire_at`` is the next tick a scheduler claims
    (``SELECT … FOR UPDATE SKIP LOCKED``); NULL once it has ended."""

    __tablename__ = "schedules"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index(None, "next_fire_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=_uuid_str)
    tenant_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(255))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    paused: Mapped[bool] = mapped_column(default=False)
    next_fire_at: Mapped[datetime | None] = mapped_column()
    last_fire_at: Mapped[datetime | None] = mapped_column()
    last_run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        default=utcnow, onupdate=utcnow, server_default=func.now()
    )


class ScheduleFireRecord(Base):
    """One tick of a schedule, written in the transaction that starts its run (or records
    why it was skipped): the primary key (schedule, fire time) makes a tick fire once."""

    __tablename__ = "schedule_fires"
    # The trigger service's ledger retention, oldest first (the primary key leads with the
    # schedule, so it cannot serve a scan over every schedule).
    __table_args__ = (Index(None, "fire_time"),)

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    fire_time: Mapped[datetime] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(32))
    run_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
