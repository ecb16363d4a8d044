"""Request and response bodies of the HTTP API (``*Create`` in, ``*Public`` out)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from cadenza_state import TERMINAL_RUN_STATUSES, RunRecord, TaskRecord, WorkflowRecord
from cadenza_workflow import Budget
from cadenza_workflow import run_budget as effective_run_budget
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .usage import RunUsage, UsageRollup, UsageTotals

WORKFLOW_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}(@[1-9][0-9]{0,8})?$"
_REF_RE = re.compile(WORKFLOW_REF_PATTERN)


def _null_left_out(schema: dict[str, Any]) -> None:
    """The field's JSON Schema without its `null` branch: null means "absent" to the server,
    and the schema says "give this field or leave it out" (see RunCreate's oneOf)."""
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


# --------------------------------------------------------------------------- workflows


class WorkflowPublic(BaseModel):
    """One immutable version of a registered workflow."""

    name: str = Field(description="Workflow name (unique per tenant).")
    version: int = Field(description="Version number: 1 for the first registration, then +1.")
    created_at: datetime = Field(description="When this version was registered.")
    spec: dict[str, Any] = Field(description="The validated spec, in the native JSON format.")

    @classmethod
    def from_record(cls, record: WorkflowRecord) -> WorkflowPublic:
        return cls(
            name=record.name, version=record.version, created_at=record.created_at, spec=record.spec
        )


class WorkflowSummary(BaseModel):
    """A workflow version without its spec (listings)."""

    name: str = Field(description="Workflow name.")
    version: int = Field(description="Version number.")
    created_at: datetime = Field(description="When this version was registered.")
    description: str | None = Field(default=None, description="The spec's description.")

    @classmethod
    def from_record(cls, record: WorkflowRecord) -> WorkflowSummary:
        description = record.spec.get("description")
        return cls(
            name=record.name,
            version=record.version,
            created_at=record.created_at,
            description=description if isinstance(description, str) else None,
        )


class WorkflowsPublic(BaseModel):
    """A page of workflows (latest version of each name, by name)."""

    items: list[WorkflowSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class WorkflowVersionsPublic(BaseModel):
    """Every version of one workflow, newest first."""

    items: list[WorkflowSummary]


# --------------------------------------------------------------------------- runs


class RunCreate(BaseModel):
    """Start a run of a registered workflow (`workflow`) or of an inline spec (`spec`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # What _exactly_one_source enforces, said in the schema: one of the two, never
            # both (the server also reads null as absent; the schema leaves null out).
            "oneOf": [
                {"required": ["workflow"], "not": {"required": ["spec"]}},
                {"required": ["spec"], "not": {"required": ["workflow"]}},
            ],
            "examples": [
                {"workflow": "greet", "inputs": {"who": "ada"}},
                {"workflow": "greet@2"},
                {"spec": {"name": "adhoc", "tasks": [{"id": "a", "tool": "transform"}]}},
            ],
        },
    )

    workflow: str | None = Field(
        default=None,
        pattern=WORKFLOW_REF_PATTERN,
        json_schema_extra=_null_left_out,
        description="A registered workflow: `name` (its latest version) or `name@version`.",
    )
    spec: dict[str, Any] | str | None = Field(
        default=None,
        json_schema_extra=_null_left_out,
        description="An inline spec instead of a registered workflow: a JSON object (native "
        "or a React Flow export) or YAML/JSON text.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Input values by name; defaults fill the rest."
    )
    budget: Budget | None = Field(
        default=None,
        description="Token and USD limits of this run, applied with the workflow's own "
        "`budget` (the tighter of the two wins). See docs/guardrails.md.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RunCreate:
        if (self.workflow is None) == (self.spec is None):
            raise ValueError("give exactly one of `workflow` (a registered name) or `spec`")
        return self

    def workflow_ref(self) -> tuple[str, int | None]:
        """``name`` / ``name@3`` → (name, version or None for the latest)."""
        if self.workflow is None or not _REF_RE.match(self.workflow):
            raise ValueError(f"not a workflow reference: {self.workflow!r}")
        name, _, version = self.workflow.partition("@")
        return name, int(version) if version else None


class TaskPublic(BaseModel):
    """One task instance of a run (a spec node, or one item of a fan-out node)."""

    id: str = Field(description="Task instance id (the `task_id` of events).")
    node_id: str = Field(description="The spec task id this instance runs.")
    item_index: int | None = Field(description="Fan-out item index; null if not fanned out.")
    status: str = Field(
        description="pending, ready, running, succeeded, failed, skipped, cancelled, "
        "recovered, awaiting_approval, in_doubt or paused (held by a budget)."
    )
    attempt: int = Field(description="Dispatches so far (re-dispatch after a lost worker +1).")
    max_attempts: int = Field(description="Executions allowed per dispatch (retries).")
    output: Any = Field(default=None, description="The task's output (null if claim-checked).")
    output_ref: str | None = Field(
        default=None, description="Object-store key of an output too large to inline."
    )
    error: dict[str, Any] | None = Field(default=None, description="Last error, if failed.")
    worker_id: str | None = Field(default=None, description="Worker of the current attempt.")
    ready_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    cache_key: str | None = Field(
        default=None,
        description="Hash of what determines the output (task, pinned agent, rendered params, "
        "a fork's overrides); a rerun or fork reuses an output only under the same key.",
    )
    reused_from: str | None = Field(
        default=None,
        description="Completed from a recorded output instead of running: the parent run's "
        "task id, or `override` for an output replaced by hand.",
    )
    usage: UsageTotals = Field(
        default_factory=UsageTotals,
        description="LLM turns, tokens, cost and tool calls of this task (all attempts).",
    )

    @classmethod
    def from_record(cls, task: TaskRecord, usage: UsageTotals | None = None) -> TaskPublic:
        return cls(
            id=task.id,
            node_id=task.node_id,
            item_index=task.item_index,
            status=task.status,
            attempt=task.attempt,
            max_attempts=task.max_attempts,
            output=task.output,
            output_ref=task.output_ref,
            error=task.error,
            worker_id=task.worker_id,
            ready_at=task.ready_at,
            started_at=task.started_at,
            finished_at=task.finished_at,
            updated_at=task.updated_at,
            cache_key=task.cache_key,
            reused_from=task.reused_from,
            usage=usage or UsageTotals(),
        )


class RunSummary(BaseModel):
    """A run without its inputs, output and tasks (listings)."""

    id: str = Field(description="Run id (the `plan_id` of events).")
    tenant_id: str = Field(description="Tenant owning the run.")
    workflow_name: str = Field(description="Workflow name.")
    workflow_version: int | None = Field(description="Registered version; null = inline spec.")
    status: str = Field(
        description="pending, running, paused, succeeded, failed, cancelled or budget_exceeded."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    started_by: dict[str, Any] | None = Field(
        default=None,
        description="What started the run when not an API call: a trigger's event "
        "(`kind: trigger`, trigger, event id/source/type, topic, partition, offset) or a "
        "schedule's tick (`kind: schedule`, schedule, fire_time).",
    )
    parent_run_id: str | None = Field(
        default=None, description="The run this one reran or forked (docs/replay.md)."
    )

    @classmethod
    def from_record(cls, run: RunRecord) -> RunSummary:
        return cls(
            id=run.id,
            tenant_id=run.tenant_id,
            workflow_name=run.workflow_name,
            workflow_version=run.workflow_version,
            status=run.status,
            created_at=run.created_at,
            updated_at=run.updated_at,
            finished_at=run.finished_at,
            started_by=run.started_by,
            parent_run_id=run.parent_run_id,
        )


class RunPublic(RunSummary):
    """A run as PostgreSQL (the truth) records it, with every task instance."""

    inputs: dict[str, Any] = Field(description="Resolved inputs (defaults applied).")
    output: Any = Field(default=None, description="The run's output once it succeeded.")
    error: dict[str, Any] | None = Field(default=None, description="Why the run failed.")
    idempotency_key: str | None = Field(default=None, description="Idempotency-Key, if sent.")
    tasks: list[TaskPublic] = Field(
        default_factory=list, description="Task instances in spec order, then fan-out index."
    )
    agents: dict[str, int] = Field(
        default_factory=dict,
        description="The agent versions this run is pinned to (name → version).",
    )
    usage: RunUsage = Field(
        default_factory=RunUsage,
        description="LLM tokens, cost and tool calls: in total, per agent and per model.",
    )
    lineage: dict[str, Any] | None = Field(
        default=None,
        description="For a rerun or fork: `kind`, `parent_run_id`, the tasks it reran "
        "(`from`) or the overrides it was forked with (`forked_at`, `inputs`, `tasks`).",
    )
    budget: Budget | None = Field(
        default=None,
        description="The run's limits (the workflow's budget and the request's, the tighter "
        "of the two, then any limit raised by a resume); compare with "
        "usage.total.total_tokens and usage.total.cost_usd.",
    )

    @classmethod
    def from_run(
        cls, run: RunRecord, tasks: list[TaskRecord], usage: UsageRollup | None = None
    ) -> RunPublic:
        order = {
            t.get("id"): i for i, t in enumerate(run.spec.get("tasks", [])) if isinstance(t, dict)
        }
        ordered = sorted(
            tasks,
            key=lambda t: (order.get(t.node_id, len(order)), t.node_id, t.item_index or 0),
        )
        return cls(
            **RunSummary.from_record(run).model_dump(),
            inputs=run.inputs,
            output=run.output,
            error=run.error,
            idempotency_key=run.idempotency_key,
            tasks=[
                TaskPublic.from_record(t, usage.by_task.get(t.id) if usage else None)
                for t in ordered
            ],
            agents=run.spec.get("agents", {}),
            usage=usage.usage if usage else RunUsage(),
            lineage=run.lineage,
            budget=run_budget(run),
        )


def run_budget(run: RunRecord) -> Budget | None:
    """The limits the workers apply to ``run`` (same rule as theirs: the tighter wins, then
    what an operator raised when resuming it)."""
    return effective_run_budget(run.spec.get("budget"), run.budget)


class RunsPublic(BaseModel):
    """A page of runs, newest first."""

    items: list[RunSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class RunStatusPublic(BaseModel):
    """A run's status for cheap polling (Redis hot status, else PostgreSQL)."""

    id: str
    status: str = Field(
        description="pending, running, paused, succeeded, failed, cancelled or budget_exceeded."
    )
    terminal: bool = Field(description="True once the status can no longer change.")
    source: Literal["hot", "database"] = Field(
        description="`hot` = the Redis cache the orchestrator keeps; `database` = PostgreSQL."
    )
    details: dict[str, str] = Field(
        default_factory=dict, description="Other fields of the hot status (counters, times)."
    )

    @classmethod
    def of(
        cls,
        run_id: str,
        status: str,
        source: Literal["hot", "database"],
        details: dict[str, str] | None = None,
    ) -> RunStatusPublic:
        return cls(
            id=run_id,
            status=status,
            terminal=status in TERMINAL_RUN_STATUSES,
            source=source,
            details=details or {},
        )


# --------------------------------------------------------------------------- health


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessPublic(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, str] = Field(description="Each dependency check and its result.")
