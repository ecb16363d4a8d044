"""An evaluation suite: a YAML file of cases, each with inputs (or a recorded run to score)
and criteria over the trajectory and the output.

```yaml
name: payment-triage
target: .                      # bundle dir or workflow file, relative to this file
cases:
  - name: outage is escalated
    inputs: {transaction_id: tx_1002}
    criteria:
      - tool_called: get_psp_status
        before: answer
      - max_steps: 8
      - no_repeated_call: true
      - tools_in_order: [get_transaction, get_psp_status]
      - output_matches: {expression: "output.route == 'escalation'"}
      - cost_usd_below: 0.01
      - latency_below: 120     # seconds
      - judge: {rubric: "The next step names the PSP.", min_score: 6}
```"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from cadenza_workflow import SpecValidationError
from cadenza_workflow.loading import load_document
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # What to look at: every agent step of the run, or only the steps of these task ids.
    tasks: list[str] | None = Field(default=None, description="Restrict to these task ids.")


class ToolCalled(_Criterion):
    tool_called: str
    before: Literal["answer"] | None = Field(
        default=None, description="`answer`: the call came before the agent's final answer."
    )


class MaxSteps(_Criterion):
    max_steps: int = Field(ge=1, description="At most this many LLM turns.")


class NoRepeatedCall(_Criterion):
    no_repeated_call: bool = True


class ToolsInOrder(_Criterion):
    tools_in_order: list[str] = Field(min_length=1)


class ToolsAnyOrder(_Criterion):
    tools_any_order: list[str] = Field(min_length=1)


class OutputMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    expression: str | None = None

    @model_validator(mode="after")
    def _one(self) -> OutputMatch:
        if (self.json_schema is None) == (self.expression is None):
            raise ValueError("give exactly one of `schema` or `expression`")
        return self


class OutputMatches(_Criterion):
    output_matches: OutputMatch


class CostBelow(_Criterion):
    cost_usd_below: float = Field(ge=0)


class LatencyBelow(_Criterion):
    latency_below: float = Field(gt=0, description="Seconds, run creation to finish.")


class JudgeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rubric: str = Field(min_length=1)
    model: str | None = Field(default=None, description="`provider:model`; default the suite's.")
    min_score: int = Field(default=6, ge=0, le=10)


class Judge(_Criterion):
    judge: JudgeSpec


Criterion = Annotated[
    ToolCalled
    | MaxSteps
    | NoRepeatedCall
    | ToolsInOrder
    | ToolsAnyOrder
    | OutputMatches
    | CostBelow
    | LatencyBelow
    | Judge,
    Field(union_mode="left_to_right"),
]


def criterion_name(criterion: Any) -> str:
    """The criterion's key (`tool_called`, `max_steps`...), its name in results."""
    fields = set(type(criterion).model_fields) - {"tasks", "before"}
    return next(iter(fields))


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    inputs: dict[str, Any] = Field(default_factory=dict)
    run: str | None = Field(default=None, description="A recorded run id: scored, not rerun.")
    criteria: list[Criterion] = Field(min_length=1)


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str | None = None
    target: str = Field(default=".", description="Bundle dir or workflow file (relative).")
    judge_model: str = Field(default="local:smollm2-135m", description="Default judge model.")
    cases: list[Case] = Field(min_length=1)
    path: Path | None = Field(default=None, exclude=True)

    def target_path(self) -> Path:
        base = self.path.parent if self.path is not None else Path.cwd()
        return (base / self.target).resolve()


class SuiteError(Exception):
    """A suite file that cannot be used; the message names the file and the field."""


def parse_suite(text: str, where: str = "suite") -> Suite:
    try:
        data = load_document(text)  # YAML 1.2, the dialect of specs and the gateway
    except SpecValidationError as exc:
        raise SuiteError(f"{where}: not YAML: {exc}") from None
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        lines = [f"{where}: invalid suite"]
        for error in exc.errors(include_url=False)[:10]:
            loc = ".".join(str(p) for p in error["loc"])
            lines.append(f"  - {loc}: {error['msg']}")
        raise SuiteError("\n".join(lines)) from None


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SuiteError(f"{path}: {exc.strerror}") from None
    suite = parse_suite(text, str(path))
    suite.path = path.resolve()
    return suite
