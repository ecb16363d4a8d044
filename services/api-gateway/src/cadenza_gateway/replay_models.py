"""Request and response bodies of rerun, fork, diff and call inspection (docs/replay.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from cadenza_workflow import MAX_VERSION
from cadenza_workflow.json_types import json_integers
from pydantic import BaseModel, ConfigDict, Field

# -------------------------------------------------------------------- rerun and fork


class RerunCreate(BaseModel):
    """A new run of the same pinned workflow version: tasks upstream of ``from`` reuse
    their recorded outputs, ``from`` and everything downstream of it run again."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: list[str] | None = Field(
        default=None,
        alias="from",
        max_length=1000,
        description="Task ids to run again (with every task that depends on them). Default: "
        "the parent's failed tasks.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Input values to change (e.g. the one that made a task fail); the others "
        "stay the parent's. A task upstream of `from` whose rendered params change runs again.",
    )


class TaskOverride(BaseModel):
    """What a fork changes about one task."""

    model_config = ConfigDict(extra="forbid")

    _integers = json_integers("agent_version")

    agent_version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="kind=agent: run this version of the task's agent.",
    )
    system_prompt: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="kind=agent: replaces the agent's system prompt for this task.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="kind=agent: replaces the agent's model (`provider:model`) for this task.",
    )
    output: Any = Field(
        default=None,
        description="Replaces the task's output by hand (the task does not run). Give the "
        "field, even as null, to replace; leave it out to keep the task computed.",
    )

    @property
    def replaces_output(self) -> bool:
        return "output" in self.model_fields_set


class ForkCreate(BaseModel):
    """A new run of the parent's pinned workflow version with overrides; every task whose
    cache key is unchanged reuses the parent's output, the others (exactly the dependants of
    what changed) run."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Input values to change; the others stay the parent's."
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Model (`provider:model`) for every agent task without its own override.",
    )
    tasks: dict[str, TaskOverride] = Field(
        default_factory=dict, max_length=1000, description="Overrides by task id."
    )


# ------------------------------------------------------------------------------- diff


class CallCounts(BaseModel):
    llm_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class TaskSide(BaseModel):
    """One run's side of a task in a diff (null when the run has no such task row)."""

    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    cache_key: str | None = None
    reused_from: str | None = None
    calls: CallCounts = Field(default_factory=CallCounts)


class TaskDiff(BaseModel):
    node_id: str
    a: TaskSide | None = None
    b: TaskSide | None = None
    same_output: bool
    same_cache_key: bool


class ValueDiff(BaseModel):
    a: Any = None
    b: Any = None


class RunDiff(BaseModel):
    """Two runs side by side: inputs that differ, statuses, outputs and, per task, outputs,
    cache keys, whether it was reused, and its calls."""

    a: str
    b: str
    related: bool = Field(description="One run is the other's parent.")
    status: ValueDiff
    output: ValueDiff
    same_output: bool
    inputs: dict[str, ValueDiff] = Field(description="Only the inputs that differ.")
    tasks: list[TaskDiff]


# ------------------------------------------------------------------------------ calls


class CallPublic(BaseModel):
    """One LLM call or tool call of a run, as recorded."""

    id: str = Field(
        description="`llm:<n>`, `tool:<n>` (an agent's tool call) or `task:<id>` "
        "(a tool task's call)."
    )
    kind: Literal["llm", "tool"]
    task_id: str
    node_id: str
    item_index: int | None = None
    attempt: int
    turn: int | None = Field(default=None, description="Agent loop turn (agent calls).")
    call_index: int | None = None
    at: datetime = Field(description="When the call was recorded (the listing's order).")
    started_at: datetime | None = None
    latency_ms: float | None = None
    status: str
    error: Any = None
    # LLM calls
    agent: str | None = None
    agent_version: int | None = None
    provider: str | None = None
    model: str | None = None
    messages: list[Any] | None = Field(default=None, description="Messages sent.")
    request: Any = Field(default=None, description="The whole request (tools, schema…).")
    response: Any = None
    tool_calls: list[Any] | None = Field(default=None, description="Tool calls the model asked.")
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    # tool calls
    tool: str | None = None
    arguments: Any = None
    result: Any = None


class CallsPublic(BaseModel):
    """A page of a run's calls, oldest first."""

    items: list[CallPublic]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )
