"""Versioned payload models, one per event type.

The CloudEvents ``type`` carries the version (``cadenza.task.ready.v1``). New fields must
be optional so old consumers keep decoding; a breaking change is a new type (``.v2``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TENANT = "default"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every payload; ``EVENT_TYPE`` is the CloudEvents type it travels as."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    EVENT_TYPE: ClassVar[str]


class PlanRequested(Payload):
    """A run was accepted: the orchestrator should expand its spec into a plan.

    With ``row_version`` set, the event carries every column of the new run that the
    orchestrator reads (the spec and inputs as the row holds them, ``budget``; no
    ``replay``), and planning reads no row: its guarded write still checks that the row is
    at that version (a plan delivered again, or a cancel applied first, fails the guard).
    Events older writers sent lack it, as do reruns and forks: their row is read."""

    EVENT_TYPE: ClassVar[str] = "cadenza.plan.requested.v1"
    run_id: str
    workflow_name: str | None = None
    workflow_version: int | None = None
    spec: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] | None = None
    row_version: int | None = None


class RunCancelRequested(Payload):
    """Someone asked to cancel a run. A command on the ``plan.requested`` topic (keyed by
    run, so it follows the run's plan in order): the orchestrator, the one writer of run
    state, cancels the run and its open tasks and tells the workers to stop."""

    EVENT_TYPE: ClassVar[str] = "cadenza.run.cancel_requested.v1"
    run_id: str
    requested_by: str | None = Field(default=None, description="Credential subject, for audit")
    reason: str | None = None


class RunResumeRequested(Payload):
    """Someone asked to resume a run paused by a budget (``on_exceeded: pause``). A command
    on the ``plan.requested`` topic, like a cancel: the orchestrator, the one writer of run
    state, raises the run's own limit when ``budget`` is given and dispatches the held tasks
    again."""

    EVENT_TYPE: ClassVar[str] = "cadenza.run.resume_requested.v1"
    run_id: str
    requested_by: str | None = Field(default=None, description="Credential subject, for audit")
    reason: str | None = None
    budget: dict[str, Any] | None = Field(
        default=None,
        description="New run limits ({max_tokens, max_usd}) replacing the run's own, per field",
    )


class RunStopped(Payload):
    """A run stopped before its tasks finished (cancelled, failed, over its budget): every
    worker process stops the run's tasks in flight at once and reports them ``cancelled``.
    Broadcast on ``run.control`` to every worker (``Bus.listener``). The Redis marker
    ``run:{id}:cancelled`` stays the durable record (a claim checks it, the heartbeat
    re-reads it): this event only makes the stop immediate."""

    EVENT_TYPE: ClassVar[str] = "cadenza.run.stopped.v1"
    run_id: str
    status: str = Field(description="The run's status: cancelled, failed or budget_exceeded")


class TaskReady(Payload):
    """A task instance is ready to run; workers compete for it (keyed by task id)."""

    EVENT_TYPE: ClassVar[str] = "cadenza.task.ready.v1"
    run_id: str
    task_id: str
    node_id: str
    attempt: int = 1
    kind: str = "tool"
    name: str = Field(description="Tool or agent name")
    params: dict[str, Any] | None = None
    params_ref: str | None = Field(default=None, description="Object-store key (claim-check)")
    timeout_s: float = 300.0
    max_attempts: int = 3
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    backoff_multiplier: float = Field(
        default=2.0,
        description="Factor applied to the delay after each retry (spec retry.multiplier)",
    )
    jitter: bool = Field(
        default=True, description="Randomise each delay to 50-100% (spec retry.jitter)"
    )
    ready_at: datetime = Field(default_factory=utcnow)
    agent_overrides: dict[str, Any] | None = Field(
        default=None,
        description="kind=agent, in a fork: replaces fields of the pinned agent definition "
        "for this task (`system_prompt`, `model`).",
    )
    approval: dict[str, Any] | None = Field(
        default=None,
        description="The workflow task's own `approval` rules (TaskApproval); `{}` when it "
        "has none. Carried so that a worker needs no database read to run a tool task. Null "
        "means not stated (an older orchestrator's event): the worker reads the run's spec.",
    )


class TaskError(BaseModel):
    """Why a task attempt failed."""

    model_config = ConfigDict(frozen=True)
    code: str
    message: str
    retryable: bool = False
    details: dict[str, Any] | None = Field(
        default=None,
        description="Structured facts of the failure, e.g. which budget ran out and how much "
        "was spent (budget_exceeded) or what a guardrail found (guardrail_violated)",
    )


class Handoff(BaseModel):
    """An agent handing its task to another agent (the orchestrator dispatches the task to
    it as a new attempt, with this conversation as context)."""

    model_config = ConfigDict(frozen=True)
    agent: str = Field(description="The agent taking over (a name, or name@version)")
    reason: str = ""
    from_agent: str = Field(description="The agent handing over")
    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="The conversation so far (without the system prompt)"
    )


class Hold(BaseModel):
    """A tool call a worker did not make (or cannot tell whether it made): the task waits for
    a person. ``approval``: the call needs a yes or no; ``in_doubt``: a non-idempotent call
    was sent but its result never recorded (docs/guardrails.md)."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["approval", "in_doubt"]
    call_index: int = Field(ge=0, description="The call's index in the task (effect journal key)")
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(default="", description="The agent's message with the call, or why")
    rule: str = Field(default="", description="What made the call need approval")
    timeout_s: float | None = Field(default=None, description="Answer within (None: forever)")
    on_timeout: Literal["reject", "fail"] = "reject"


class RunEvent(Payload):
    """Something an operator may want to see on a run's timeline or live stream."""

    EVENT_TYPE: ClassVar[str] = "cadenza.run.event.v1"
    run_id: str
    kind: str = Field(description="e.g. run.started, task.ready, task.started, task.succeeded")
    task_id: str | None = None
    node_id: str | None = None
    status: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=utcnow)


class TaskResult(Payload):
    """The outcome of one task attempt, published once per (task_id, attempt)."""

    EVENT_TYPE: ClassVar[str] = "cadenza.task.result.v1"
    run_id: str
    task_id: str
    attempt: int
    status: Literal["succeeded", "failed", "cancelled", "awaiting_approval", "in_doubt"]
    output: Any = None
    output_ref: str | None = None
    error: TaskError | None = None
    tries: int = Field(default=1, description="Executions inside this attempt (worker retries)")
    handoff: Handoff | None = Field(
        default=None, description="Set when an agent handed the task to another agent"
    )
    hold: Hold | None = Field(
        default=None, description="Set with status awaiting_approval / in_doubt: the held call"
    )
    worker_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime = Field(default_factory=utcnow)
    events: list[RunEvent] = Field(
        default_factory=list,
        description="The attempt's run events the worker had not sent yet (task.started, "
        "task.finished…): they ride in the result, and the orchestrator adds them to the "
        "run's timeline record, so a short task costs the bus no record of its own",
    )


class HoldResolved(Payload):
    """A person (or the approval timeout) answered a held task: a command to the
    orchestrator, which owns the task's state. Travels on ``task.result`` (keyed by run, so
    the run's owner sees it in order with the run's results)."""

    EVENT_TYPE: ClassVar[str] = "cadenza.task.hold_resolved.v1"
    run_id: str
    task_id: str
    attempt: int = Field(description="The held attempt")
    approval_id: str
    kind: Literal["approval", "in_doubt"]
    decision: Literal["approved", "rejected", "expired", "done", "retry"]
    fail: bool = Field(default=False, description="Fail the task (an expired `fail` policy)")
    comment: str | None = None


class RunEventBatch(Payload):
    """Several events of one run travelling as ONE record (what one orchestrator transaction
    or one worker flush produced), so a run's timeline costs the bus one message per batch,
    not one per event. Readers unpack it with ``unbatch`` into ordinary ``RunEvent``s."""

    EVENT_TYPE: ClassVar[str] = "cadenza.run.events.v1"
    run_id: str
    events: list[RunEvent] = Field(min_length=1)


class DocIngest(Payload):
    """A document landed in the object store and should be chunked and embedded."""

    EVENT_TYPE: ClassVar[str] = "cadenza.doc.ingest.v1"
    document_id: str
    object_ref: str
    content_type: str = "text/plain"
    collection: str = "default"
    metadata: dict[str, Any] = Field(default_factory=dict)
    action: Literal["ingest", "delete"] = Field(
        default="ingest",
        description="`delete` removes the document's chunks (same key: ordered after its ingests).",
    )
    title: str | None = Field(default=None, description="Title or file name, for citations.")


class DeadLetter(Payload):
    """A message a consumer could not handle, with the reason; never silently dropped."""

    EVENT_TYPE: ClassVar[str] = "cadenza.dlq.v1"
    original_topic: str
    partition: int
    offset: int
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    value_b64: str
    reason: str
    error_code: str
    attempts: int
    consumer_group: str
    failed_at: datetime = Field(default_factory=utcnow)


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.EVENT_TYPE: cls
    for cls in (
        PlanRequested,
        RunCancelRequested,
        RunResumeRequested,
        RunStopped,
        TaskReady,
        TaskResult,
        HoldResolved,
        RunEvent,
        RunEventBatch,
        DocIngest,
        DeadLetter,
    )
}
