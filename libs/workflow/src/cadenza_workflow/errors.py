"""Typed, serializable errors for workflow specs and expressions."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """Machine-readable codes carried by :class:`SpecError`."""

    INVALID_SYNTAX = "invalid_syntax"
    """The document is not valid YAML/JSON or not a mapping."""
    INVALID_FIELD = "invalid_field"
    """A field has a wrong type or value, or is not valid for the task's kind."""
    UNKNOWN_FIELD = "unknown_field"
    """A field that the spec does not define (typo?)."""
    MISSING_FIELD = "missing_field"
    """A required field is absent (``id``, ``tool`` for kind=tool, ``agent`` for kind=agent…)."""
    DUPLICATE_ID = "duplicate_id"
    UNKNOWN_NEED = "unknown_need"
    SELF_DEPENDENCY = "self_dependency"
    UNKNOWN_FALLBACK = "unknown_fallback"
    """``on_failure`` names a task that does not exist."""
    NOT_FALLBACK = "not_fallback"
    """``on_failure`` names a task that is not marked ``fallback: true``."""
    CYCLE = "cycle"
    UNREACHABLE = "unreachable"
    INVALID_EXPRESSION = "invalid_expression"
    """An expression does not parse or uses a construct/function the sandbox refuses."""
    UNKNOWN_NAME = "unknown_name"
    """An expression uses a name that is not in its context (e.g. ``item`` outside for_each)."""
    INVALID_REFERENCE = "invalid_reference"
    """``tasks.X`` names an unknown task, a task that is not an ancestor, or an unknown field."""
    UNKNOWN_TOOL = "unknown_tool"
    UNKNOWN_AGENT = "unknown_agent"
    """An agent (or agent version) that is not registered for the tenant."""
    MISSING_INPUT = "missing_input"
    INPUT_TYPE = "input_type"
    UNKNOWN_INPUT = "unknown_input"


class SpecError(BaseModel):
    """One problem found in a workflow spec (or in the inputs given to it)."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(
        description=(
            "Where the problem is: a path such as 'tasks[2].needs[0]', 'tasks[0].with.url', "
            "'inputs.amount' or 'output'; '' for the whole document."
        )
    )
    task: str | None = Field(default=None, description="The id of the task concerned, if any.")
    code: ErrorCode = Field(description="Machine-readable error code.")
    message: str = Field(description="Human-readable message naming the task and field.")

    @classmethod
    def at(cls, code: ErrorCode, field: str, detail: str, task: str | None = None) -> SpecError:
        """Build an error whose message starts with where it is: ``task 'x', field …: detail``."""
        if task is not None:
            where = f"task '{task}', field {field}" if field else f"task '{task}'"
        else:
            where = f"field {field}" if field else "workflow"
        return cls(field=field, task=task, code=code, message=f"{where}: {detail}")


class SpecValidationError(Exception):
    """A workflow spec (or a run's inputs) is invalid; ``errors`` lists every problem found."""

    code = "invalid_workflow"
    retryable = False

    def __init__(self, errors: Iterable[SpecError]) -> None:
        self.errors: list[SpecError] = list(errors)
        super().__init__(self._summary())

    def _summary(self) -> str:
        n = len(self.errors)
        if n == 1:
            return f"invalid workflow spec: {self.errors[0].message}"
        lines = "\n".join(f"  - {e.message}" for e in self.errors)
        return f"invalid workflow spec ({n} problems):\n{lines}"

    def codes(self) -> list[str]:
        """The error codes, in order (handy in tests and logs)."""
        return [str(e.code) for e in self.errors]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{code, message, errors: [{field, task, code, message}]}``."""
        return {
            "code": self.code,
            "message": str(self),
            "errors": [e.model_dump(mode="json") for e in self.errors],
        }


class ExpressionError(Exception):
    """An expression failed to compile or to evaluate."""

    code = "invalid_expression"
    retryable = False

    def __init__(self, expression: str, message: str) -> None:
        self.expression = expression
        self.message = message
        super().__init__(f"{message} (in expression {expression!r})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{code, message, expression}``."""
        return {"code": self.code, "message": self.message, "expression": self.expression}
