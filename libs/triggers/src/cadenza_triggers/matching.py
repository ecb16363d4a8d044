"""A registered trigger ready to judge events: its filter, input mapping and dedupe key.

Errors here are the event's fault (an expression failing on its data, a mapping giving
inputs the workflow refuses): they are non-retryable, so the consumer dead-letters the
event with the reason and carries on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cadenza_events import NonRetryableError
from cadenza_state import TriggerRecord
from cadenza_workflow import ExpressionError, compile_expression, render

from .cloudevents import CloudEvent
from .spec import TriggerSpec

MAX_KEY_CHARS = 512


class FilterFailed(NonRetryableError):
    code = "filter_failed"


class MappingFailed(NonRetryableError):
    code = "mapping_failed"


class InvalidInputs(NonRetryableError):
    code = "invalid_inputs"


class WorkflowMissing(NonRetryableError):
    code = "workflow_missing"


def _allowed(wanted: str | list[str] | None, actual: str | None) -> bool:
    if wanted is None:
        return True
    return actual in ([wanted] if isinstance(wanted, str) else wanted)


@dataclass(frozen=True)
class Trigger:
    """The version in force of one tenant's trigger."""

    tenant_id: str
    name: str
    version: int
    spec: TriggerSpec

    @classmethod
    def of(cls, record: TriggerRecord) -> Trigger:
        return cls(
            tenant_id=record.tenant_id,
            name=record.name,
            version=record.version,
            spec=TriggerSpec.model_validate(record.spec),
        )

    def matches(self, event: CloudEvent) -> bool:
        """Attribute filters, then the expression (FilterFailed when it errors)."""
        f = self.spec.filter
        if not (
            _allowed(f.type, event.type)
            and _allowed(f.source, event.source)
            and _allowed(f.subject, event.subject)
        ):
            return False
        if f.expression is None:
            return True
        try:
            return bool(compile_expression(f.expression).evaluate(event.context()))
        except ExpressionError as exc:
            raise FilterFailed(f"trigger {self.name!r}: filter.expression failed: {exc}") from None

    def map_inputs(self, event: CloudEvent) -> dict[str, Any]:
        try:
            inputs = render(self.spec.inputs, event.context())
        except ExpressionError as exc:
            raise MappingFailed(f"trigger {self.name!r}: inputs mapping failed: {exc}") from None
        assert isinstance(inputs, dict)
        return inputs

    def dedupe_key(self, event: CloudEvent) -> str:
        """The event's identity for this trigger (default: source + id). Long keys are
        hashed so the unique index stays small."""
        if self.spec.dedupe_key is None:
            key = f"{event.source}\n{event.id}"
        else:
            try:
                value = compile_expression(self.spec.dedupe_key).evaluate(event.context())
            except ExpressionError as exc:
                raise MappingFailed(f"trigger {self.name!r}: dedupe_key failed: {exc}") from None
            if value is None or value == "":
                raise MappingFailed(f"trigger {self.name!r}: dedupe_key is empty for this event")
            key = value if isinstance(value, str) else repr(value)
        if len(key) > MAX_KEY_CHARS:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key
