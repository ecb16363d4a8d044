"""Guardrail settings shared by workflows, agents and run requests: spending limits
(`Budget`) and output checks (`GuardrailPolicy`). See docs/guardrails.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .json_types import json_integers

OnExceeded = Literal["stop", "pause"]
PiiEntity = Literal["email", "phone", "credit_card", "iban", "national_id"]
PiiAction = Literal["block", "redact", "flag"]
PiiTarget = Literal["output", "tool_arguments"]
PII_ENTITIES: tuple[PiiEntity, ...] = ("email", "phone", "credit_card", "iban", "national_id")
_ALL_TARGETS: tuple[PiiTarget, ...] = ("output", "tool_arguments")
ACTION_STRICTNESS: dict[str, int] = {"flag": 0, "redact": 1, "block": 2}


class Budget(BaseModel):
    """Token and USD limits of a whole run (on a workflow or a run request) or a tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _integers = json_integers("max_tokens")

    # Upper bounds keep every limit storable (BIGINT, a finite float) and exact in the
    # budget ledger's Lua arithmetic (doubles: integers exact up to 2**53).
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        le=10**12,
        description="Most input + output tokens, all LLM calls together (at most 10^12).",
    )
    max_usd: float | None = Field(
        strict=True,
        default=None,
        ge=0,
        le=1e9,
        allow_inf_nan=False,
        description="Most the LLM calls may cost, in US dollars (at most 10^9).",
    )
    on_exceeded: OnExceeded = Field(
        default="stop",
        description="'stop': the run ends with status budget_exceeded. 'pause': the run is "
        "paused (the task that could not reserve is held) until an operator raises the limit "
        "and resumes it (docs/guardrails.md).",
    )


def tighter(a: Budget | None, b: Budget | None) -> Budget | None:
    """The limits of both: per field the smaller one (a run request cannot raise the
    workflow's limit, only lower it)."""
    if a is None or b is None:
        return a or b

    def low(x: float | None, y: float | None) -> float | None:
        return y if x is None else x if y is None else min(x, y)

    tokens = low(a.max_tokens, b.max_tokens)
    return Budget(
        max_tokens=None if tokens is None else int(tokens),
        max_usd=low(a.max_usd, b.max_usd),
        on_exceeded="pause" if "pause" in (a.on_exceeded, b.on_exceeded) else "stop",
    )


class BudgetRaise(BaseModel):
    """New limits an operator gives a paused run when resuming it: they replace the run's
    own limits per field (the workflow's included — the operator decided)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = Field(
        default=None, ge=1, le=10**12, description="The run's new token limit."
    )
    max_usd: float | None = Field(
        default=None, ge=0, le=1e9, allow_inf_nan=False, description="The run's new USD limit."
    )


def run_budget(workflow: Any, request: Any) -> Budget | None:
    """A run's effective budget from the workflow spec's ``budget`` and the run row's
    ``budget`` column: the tighter of the two per field, then any limit an operator raised
    on resume (``raised`` in the column) in place of that field."""
    stored = dict(request) if isinstance(request, dict) else {}
    raised = stored.pop("raised", None) or {}
    effective = tighter(_as_budget(workflow), _as_budget(stored))
    if not raised:
        return effective
    base = effective.model_dump() if effective is not None else {}
    return Budget.model_validate(base | {k: v for k, v in raised.items() if v is not None})


def _as_budget(data: Any) -> Budget | None:
    return Budget.model_validate(data) if isinstance(data, dict) and data else None


class PiiPolicy(BaseModel):
    """Detect personal data in agent outputs and tool arguments and act on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: PiiAction = Field(
        default="flag",
        description="'block': the task fails with guardrail_violated. 'redact': the value "
        "is replaced by <ENTITY> before it leaves the agent. 'flag': recorded only.",
    )
    entities: list[PiiEntity] = Field(
        default_factory=lambda: list(PII_ENTITIES),
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description="What to look for: email, phone, credit_card (Luhn-checked), iban "
        "(checksum-verified), national_id (checksum-verified national identifiers).",
    )
    targets: list[PiiTarget] = Field(
        default_factory=lambda: list(_ALL_TARGETS),
        min_length=1,
        json_schema_extra={"uniqueItems": True},
        description="Where to look: the agent's final answer, the arguments of its tool calls.",
    )
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR"],
        description="Regions (ISO 3166 alpha-2) whose national phone formats are recognised; "
        "numbers in international +CC format are found in any case.",
    )


class GuardrailPolicy(BaseModel):
    """Output checks of an agent (on the agent, or for every agent task of a workflow)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pii: PiiPolicy | None = Field(default=None, description="Personal-data detection.")


def combine(*policies: GuardrailPolicy | None) -> GuardrailPolicy | None:
    """The agent's and the workflow's policies together: every entity and target either
    asks for, with the strictest action."""
    found = [p.pii for p in policies if p is not None and p.pii is not None]
    if not found:
        return None
    if len(found) == 1:
        return GuardrailPolicy(pii=found[0])
    action = max((p.action for p in found), key=ACTION_STRICTNESS.__getitem__)
    return GuardrailPolicy(
        pii=PiiPolicy(
            action=action,
            entities=list(dict.fromkeys(e for p in found for e in p.entities)),
            targets=list(dict.fromkeys(t for p in found for t in p.targets)),
            phone_regions=list(dict.fromkeys(r for p in found for r in p.phone_regions)),
        )
    )
