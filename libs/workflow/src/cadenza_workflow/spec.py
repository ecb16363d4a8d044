"""The workflow spec: pydantic models and :func:`parse_spec`.

The models check *shape* (types, patterns, unknown fields). Cross-field rules — references,
cycles, reachability, expressions — are checked by :func:`cadenza_workflow.validate_spec`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from .approval import TaskApproval
from .errors import ErrorCode, SpecError, SpecValidationError
from .guardrails import Budget, GuardrailPolicy
from .json_types import JSON_INTEGER, json_integers
from .loading import errors_from_pydantic, load_document
from .reactflow import from_react_flow, is_react_flow

WORKFLOW_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
TASK_ID_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
INPUT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"
MAX_TASKS = 10_000
MAX_VERSION = 2_147_483_647
"""The largest workflow or agent version: versions are 32-bit integer columns, so a larger
one is refused where it is given (naming the field) instead of failing in the database."""

InputType = Literal["string", "integer", "number", "boolean", "array", "object"]
TaskKind = Literal["tool", "agent"]
InputName = Annotated[str, StringConstraints(pattern=INPUT_NAME_PATTERN)]
AgentVersions = dict[
    Annotated[str, StringConstraints(pattern=WORKFLOW_NAME_PATTERN)],
    Annotated[int, Field(ge=1, le=MAX_VERSION), JSON_INTEGER],
]


class RetryPolicy(BaseModel):
    """How a failed task attempt is retried (exponential backoff, optional jitter)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _integers = json_integers("max_attempts")

    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Total attempts including the first (1 = no retry).",
    )
    initial_backoff_s: float = Field(
        strict=True,
        default=0.5,
        ge=0,
        le=3600,
        description="Delay before the first retry, in seconds.",
    )
    max_backoff_s: float = Field(
        strict=True,
        default=30.0,
        ge=0,
        le=86400,
        description="Upper bound on the delay between attempts.",
    )
    multiplier: float = Field(
        strict=True,
        default=2.0,
        ge=1,
        le=10,
        description="Factor applied to the delay after each retry.",
    )
    jitter: bool = Field(
        strict=True,
        default=True,
        description="Randomise each delay to between 50% and 100% of its computed value.",
    )

    @model_validator(mode="after")
    def _backoff_bounds(self) -> Self:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be greater than or equal to initial_backoff_s")
        return self

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next:
        ``min(max_backoff_s, initial_backoff_s * multiplier ** (attempt - 1))``, scaled into
        ``[50%, 100%]`` when ``jitter`` is on."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return base * (0.5 + rand() / 2) if self.jitter else base


class InputSpec(BaseModel):
    """A declared workflow input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: InputType | None = Field(
        default=None, description="JSON type of the value; omitted means any JSON value."
    )
    description: str | None = Field(
        default=None, max_length=2000, description="What the input is for."
    )
    required: bool | None = Field(
        strict=True,
        default=None,
        description="Whether a value must be supplied; defaults to true unless a default is given.",
    )
    default: Any = Field(
        default=None, description="Value used when the input is not supplied (any JSON value)."
    )

    @property
    def has_default(self) -> bool:
        """True when a ``default`` was given (even ``null``)."""
        return "default" in self.model_fields_set

    @property
    def is_required(self) -> bool:
        """``required`` if given, else true unless a default was given."""
        return self.required if self.required is not None else not self.has_default


class TaskSpec(BaseModel):
    """One task of the workflow DAG."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, serialize_by_alias=True
    )

    id: str = Field(
        pattern=TASK_ID_PATTERN,
        description="Unique task id: lowercase letter, then lowercase letters, digits or _.",
    )
    kind: TaskKind = Field(
        default="tool",
        description="'tool' (one tool call) or 'agent' (an agent run); defaults to 'agent' "
        "when 'agent' is set, else 'tool'.",
    )
    description: str | None = Field(
        default=None, max_length=2000, description="What the task does (for people)."
    )
    tool: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="kind=tool: name of the tool to call (checked against the worker's registry).",
    )
    agent: str | None = Field(
        default=None, min_length=1, max_length=128, description="kind=agent: the agent's name."
    )
    prompt: str | None = Field(
        default=None,
        max_length=100_000,
        description="kind=agent: the task prompt; may contain ${{ }} templates.",
    )
    with_: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        description="Parameters; any string may contain ${{ expr }}. A string that is exactly "
        "one ${{ expr }} becomes the expression's value, otherwise the text is interpolated.",
    )
    needs: list[str] = Field(
        default_factory=list, description="Ids of tasks that must finish before this one starts."
    )
    when: str | None = Field(
        default=None,
        max_length=10_000,
        description="Condition expression; when false the task is skipped.",
    )
    for_each: str | list[Any] | None = Field(
        default=None,
        description="Fan-out: an expression yielding a list (or a literal list); the task runs "
        "once per element with 'item' and 'index' defined.",
    )
    on_failure: str | None = Field(
        default=None,
        description="Id of a task with fallback: true to run if this task fails after retries.",
    )
    fallback: bool = Field(
        strict=True,
        default=False,
        description="This task runs only when a task names it in on_failure.",
    )
    run_if_skipped: bool = Field(
        strict=True,
        default=False,
        description="Run even if a task this one needs was skipped (by default it is skipped too).",
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retry policy for failed attempts."
    )
    timeout_s: float = Field(
        strict=True,
        default=300.0,
        gt=0,
        le=86400,
        description="Time limit for each attempt, in seconds.",
    )
    approval: TaskApproval | None = Field(
        default=None,
        description="Approval rules for this task's tool calls (same shape as an agent's "
        "`approval.rules`), added to its agent's rules; see docs/guardrails.md.",
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_kind(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "kind" not in data:
            return {**data, "kind": "agent" if "agent" in data else "tool"}
        return data


class WorkflowSpec(BaseModel):
    """A Cadenza workflow: declared inputs, a DAG of tasks and an optional output."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Cadenza workflow")

    name: str = Field(
        pattern=WORKFLOW_NAME_PATTERN,
        description="Workflow name: lowercase letters, digits, '_', '.', '-' (max 63).",
    )
    description: str | None = Field(
        default=None, max_length=10_000, description="What the workflow does."
    )
    inputs: dict[InputName, InputSpec] = Field(
        default_factory=dict, description="Declared inputs, by name (read as inputs.<name>)."
    )
    tasks: list[TaskSpec] = Field(
        min_length=1, max_length=MAX_TASKS, description="The tasks, in any order."
    )
    output: Any = Field(
        default=None,
        description="The run's output: any JSON value; strings may contain ${{ }} templates.",
    )
    agents: AgentVersions = Field(
        default_factory=dict,
        description="Agent versions by name: the version an agent task without '@version' "
        "and a handoff to that agent use. When a run starts the gateway completes this map "
        "with every agent the run can reach (latest versions unless given here).",
    )
    budget: Budget | None = Field(
        default=None,
        description="Token and USD limits of each run of this workflow (a run request may "
        "lower them). Every LLM call reserves its worst case against them first.",
    )
    guardrails: GuardrailPolicy | None = Field(
        default=None,
        description="Output checks (PII) for every agent task, on top of each agent's own.",
    )

    @property
    def task_ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id (``KeyError`` if none)."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data, as written (fields left at their defaults are omitted)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def parse_spec(
    source: str | bytes | Mapping[str, Any], content_type: str | None = None
) -> WorkflowSpec:
    """Parse a workflow from YAML/JSON text or a dict — native or a React Flow
    ``{nodes, edges}`` export — into a :class:`WorkflowSpec`.

    ``content_type`` (e.g. ``application/json``, ``application/yaml``) picks the parser for
    text; without it JSON-looking text is parsed as JSON, anything else as YAML. A top-level
    ``$schema`` key is ignored. Raises :class:`SpecValidationError` listing every shape
    problem. Does not run :func:`validate_spec`.
    """
    data = load_document(source, content_type) if isinstance(source, str | bytes) else source
    if not isinstance(data, Mapping):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise SpecValidationError(
            [SpecError.at(ErrorCode.INVALID_SYNTAX, "", f"must be a mapping, got {kind}")]
        )
    doc = {k: v for k, v in data.items() if k != "$schema"}
    if is_react_flow(doc):
        doc = from_react_flow(doc)
    try:
        return WorkflowSpec.model_validate(doc)
    except ValidationError as exc:
        raise SpecValidationError(errors_from_pydantic(exc, doc, _MODEL_FIELDS)) from None


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


_MODEL_FIELDS: dict[str, list[str]] = {
    "workflow": _aliases(WorkflowSpec),
    "task": _aliases(TaskSpec),
    "retry": _aliases(RetryPolicy),
    "input": _aliases(InputSpec),
}
