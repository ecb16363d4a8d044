"""Typed models of the API's resources. Unknown fields are kept (``extra="allow"``), so a
newer gateway's additions never break an older client."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(Resource, Generic[T]):
    """One page of a listing; pass ``next_cursor`` as ``cursor`` for the next (None = last)."""

    items: list[T]
    next_cursor: str | None = None


class Task(Resource):
    id: str
    node_id: str
    item_index: int | None = None
    status: str
    attempt: int = 0
    max_attempts: int = 0
    output: Any = None
    output_ref: str | None = None
    error: dict[str, Any] | None = None
    worker_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunSummary(Resource):
    id: str
    tenant_id: str
    workflow_name: str
    workflow_version: int | None = None
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Run(RunSummary):
    inputs: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    tasks: list[Task] = Field(default_factory=list)
    agents: dict[str, int] = Field(default_factory=dict)
    usage: dict[str, Any] = Field(default_factory=dict)


class RunStatus(Resource):
    id: str
    status: str
    terminal: bool


class Workflow(Resource):
    name: str
    version: int
    created_at: datetime
    spec: dict[str, Any]


class WorkflowSummary(Resource):
    name: str
    version: int
    created_at: datetime


class Agent(Resource):
    name: str
    version: int
    created_at: datetime
    spec: dict[str, Any]


class AgentSummary(Resource):
    name: str
    version: int
    created_at: datetime
    model: str = ""


class ApiKey(Resource):
    id: str
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    active: bool


class ApiKeyCreated(ApiKey):
    key: str = Field(repr=False)  # shown once: keep it out of reprs and logs


class Collection(Resource):
    name: str
    description: str | None = None
    documents: int = 0
    created_at: datetime


class Document(Resource):
    id: str
    collection: str
    title: str
    content_type: str
    status: str
    chunk_count: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class SearchHit(Resource):
    text: str = ""
    score: float = 0.0


class AuditEntry(Resource):
    id: int
    actor: str
    action: str
    subject: str | None = None
    created_at: datetime


class RunEvent(Resource):
    """One event of a run's stream: ``event`` is its kind (``task.succeeded``…), ``id`` its
    position (what ``Last-Event-ID`` resumes after), ``data`` its JSON payload."""

    id: int | None = None
    event: str
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"run.succeeded", "run.failed", "run.cancelled", "end"})
