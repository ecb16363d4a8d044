"""The trigger document: which upstream events start which workflow, with which inputs.

Expressions are the workflow language's (sandboxed, never ``eval``); their context is the
event: ``event.id``, ``event.source``, ``event.type``, ``event.subject``, ``event.time``,
``event.data``, ``event.extensions`` and, for Kafka records, ``event.kafka.{topic,
partition, offset, key}``; ``data`` is short for ``event.data``.
"""

from __future__ import annotations

import re
from typing import Any

from cadenza_workflow import (
    AGENT_REF_PATTERN,
    ExpressionError,
    compile_expression,
    compile_template,
    find_templates,
    parse_agent_ref,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EVENT_NAMES = frozenset({"event", "data"})
"""The names a trigger's expressions may read."""
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,127}$"
WORKFLOW_REF_PATTERN = AGENT_REF_PATTERN  # workflow and agent references share one shape
# Kafka's own rule for topic names.
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def check_expression(text: str, field: str) -> None:
    """Raise ValueError naming ``field`` when ``text`` is not an expression over the event."""
    try:
        expr = compile_expression(text)
    except ExpressionError as exc:
        raise ValueError(f"{field}: {exc}") from None
    unknown = sorted(expr.names - EVENT_NAMES)
    if unknown:
        raise ValueError(
            f"{field}: name {unknown[0]!r} is not defined (use event.* or data.* of the event)"
        )


def check_workflow_ref(ref: str) -> str:
    """``ref`` if it is ``name`` or ``name@version``; ValueError otherwise."""
    try:
        parse_agent_ref(ref)  # workflows and agents share the reference syntax
    except ValueError:
        raise ValueError(
            f"{ref!r} is not a workflow reference: use 'name' or 'name@version'"
        ) from None
    return ref


class EventFilter(BaseModel):
    """Which events a trigger takes: every attribute given must equal (or be one of) the
    event's, and ``expression``, when given, must be true."""

    model_config = ConfigDict(extra="forbid")

    type: str | list[str] | None = Field(default=None, description="CloudEvents `type`(s).")
    source: str | list[str] | None = Field(default=None, description="CloudEvents `source`(s).")
    subject: str | list[str] | None = Field(default=None, description="CloudEvents `subject`(s).")
    expression: str | None = Field(
        default=None,
        description="A condition over the event, e.g. `data.amount > 1000`; an error while "
        "evaluating it dead-letters the event.",
    )

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            check_expression(value, "filter.expression")
        return value


class TriggerSpec(BaseModel):
    """A trigger as registered (``POST /v1/triggers``, bundles). Versions are immutable; the
    latest version of a name is the one in force. It runs as the tenant that registered it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Unique per tenant.")
    description: str = Field(default="", max_length=2000)
    topics: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Kafka topics to consume (their full names, e.g. `upstream.payments`).",
    )
    http: bool = Field(
        strict=True,
        default=True,
        description="Whether events posted to POST /v1/events reach this trigger.",
    )
    filter: EventFilter = Field(default_factory=EventFilter)
    workflow: str = Field(
        # The same shape check_workflow_ref enforces, stated in the JSON Schema too.
        json_schema_extra={"pattern": WORKFLOW_REF_PATTERN},
        description="The workflow to start: `name` (latest) or `name@version`.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Input name → value; strings may hold `${{ }}` expressions over the event "
        "(`${{ data.amount }}`). A run's inputs are still checked against the workflow.",
    )
    dedupe_key: str | None = Field(
        default=None,
        description="An expression giving the event's identity for exactly-once; default: "
        "the CloudEvents `source` + `id`.",
    )
    plain_type: str | None = Field(
        default=None,
        description="The CloudEvents `type` given to plain JSON records (no CloudEvents "
        "headers) on this trigger's topics; without it such records are dead-lettered.",
    )
    enabled: bool = Field(default=True, strict=True)

    @field_validator("topics")
    @classmethod
    def _topics(cls, topics: list[str]) -> list[str]:
        for i, topic in enumerate(topics):
            if not TOPIC_RE.match(topic):
                raise ValueError(f"topics[{i}]: {topic!r} is not a Kafka topic name")
        return sorted(set(topics))

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, ref: str) -> str:
        return check_workflow_ref(ref)

    @field_validator("dedupe_key")
    @classmethod
    def _dedupe(cls, value: str | None) -> str | None:
        if value is not None:
            check_expression(value, "dedupe_key")
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, inputs: dict[str, Any]) -> dict[str, Any]:
        for field, text in find_templates(inputs, "inputs"):
            try:
                template = compile_template(text)
            except ExpressionError as exc:
                raise ValueError(f"{field}: {exc}") from None
            for expr in template.expressions:
                check_expression(expr.text, field)
        return inputs

    @model_validator(mode="after")
    def _somewhere(self) -> TriggerSpec:
        if not self.topics and not self.http:
            raise ValueError("a trigger needs `topics` or `http: true` to receive events")
        return self

    def workflow_ref(self) -> tuple[str, int | None]:
        return parse_agent_ref(self.workflow)
