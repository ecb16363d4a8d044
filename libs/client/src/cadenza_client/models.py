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
    reused_from: str | None = None  # a rerun's or fork's task that took its parent's output
    cache_key: str | None = None


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
    parent_run_id: str | None = None  # the run this one reruns or forks
    lineage: dict[str, Any] | None = None  # {kind: rerun|fork, ...}: what it changed


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
    content_hash: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class Upload(Document):
    """An uploaded (or replaced) document. ``accepted``: the gateway took the content for
    indexing (202); False when identical content was already stored (200) and this is
    that document. Not part of the resource: it never appears in dumps."""

    accepted: bool = Field(default=True, exclude=True)


class DatasetLoaded(Resource):
    dataset: str
    records: int
    upserted: int = 0
    deleted: int = 0


class SearchHit(Resource):
    text: str = ""
    score: float = 0.0


class AuditEntry(Resource):
    id: int
    actor: str
    action: str
    subject: str | None = None
    created_at: datetime


class RecordedCall(Resource):
    """One LLM or tool call of a run, as recorded (``GET /v1/runs/{id}/calls``)."""

    id: str
    kind: str  # llm | tool
    task_id: str
    node_id: str
    attempt: int
    status: str
    at: datetime
    turn: int | None = None
    provider: str | None = None
    model: str | None = None
    tool: str | None = None
    arguments: Any = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None
    error: Any = None


class TaskDiff(Resource):
    node_id: str
    same_output: bool
    same_cache_key: bool
    a: dict[str, Any] | None = None  # status, output, reused_from, calls: {llm_calls, …}
    b: dict[str, Any] | None = None


class RunDiff(Resource):
    """Two runs compared: ``status``, ``output`` and each changed input as ``{a, b}``."""

    a: str
    b: str
    related: bool
    same_output: bool
    status: dict[str, Any]
    output: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    tasks: list[TaskDiff]


class Trigger(Resource):
    tenant_id: str
    name: str
    version: int
    enabled: bool
    spec: dict[str, Any]
    created_at: datetime


class Schedule(Resource):
    id: str
    name: str
    spec: dict[str, Any]
    paused: bool
    next_fire_at: datetime | None = None
    next_fires: list[datetime] = Field(default_factory=list)
    last_fire_at: datetime | None = None
    last_run_id: str | None = None
    created_at: datetime
    updated_at: datetime


class EventsAccepted(Resource):
    """What ``POST /v1/events`` did: per event, the runs it started (none for a duplicate)."""

    mode: str
    started: int
    duplicates: int
    events: list[dict[str, Any]]


class Approval(Resource):
    """A held tool call: ``kind`` approval (waiting for a yes or no) or in_doubt."""

    id: str
    kind: str
    status: str
    run_id: str
    task_id: str
    node_id: str
    attempt: int
    call_index: int
    tool: str
    arguments: Any = None
    reason: str | None = None
    rule: str | None = None
    on_timeout: str
    expires_at: datetime | None = None
    comment: str | None = None
    output: Any = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    created_at: datetime


class DeadLetter(Resource):
    id: int
    status: str
    topic: str
    partition: int
    offset: int
    key: str | None = None
    consumer_group: str
    error_code: str
    reason: str
    attempts: int
    event_type: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    size: int
    first_bytes: str
    failed_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None


class Evaluation(Resource):
    id: str
    suite: str
    agent: str | None = None
    against: str | None = None
    passed: bool
    summary: dict[str, Any]
    results: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
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


TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "budget_exceeded"})
TERMINAL_EVENTS = frozenset(
    {"run.succeeded", "run.failed", "run.cancelled", "run.budget_exceeded", "end"}
)
