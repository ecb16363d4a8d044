"""Agent definitions: the :class:`AgentSpec` model, parsing, validation, references
(``name`` / ``name@version``) and the published JSON Schema.

An agent is registered once per version (``POST /v1/agents``) and never changes; workflow
tasks of kind ``agent`` name it, and the gateway pins each run to concrete versions.

Typical use::

    agent = load_agent(text, content_type="application/yaml", known_tools={"calculator"})
    stored = agent.to_dict()            # what the gateway stores (defaults filled in)
    name, version = parse_agent_ref("payment-classifier@2")
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from .approval import ApprovalPolicy
from .errors import ErrorCode, SpecError, SpecValidationError
from .guardrails import GuardrailPolicy, PiiPolicy
from .json_types import json_integers
from .loading import errors_from_pydantic, format_path, load_document
from .schema import published_schema
from .spec import WORKFLOW_NAME_PATTERN

AGENT_NAME_PATTERN = WORKFLOW_NAME_PATTERN
AGENT_REF_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}(@[1-9][0-9]{0,8})?$"
"""``name`` (the latest version, pinned when a run starts) or ``name@version``."""
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Tools are offered to models as functions, whose names OpenAI-style APIs limit to this."""
MODEL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}:\S{1,255}$"
"""``provider:model``; the model part may itself contain ':' (Ollama tags: ``llama3:8b``)."""
MAX_SYSTEM_PROMPT = 100_000
MAX_ITERATIONS = 50
MAX_TOOLS = 64
MAX_HANDOFFS = 32
MAX_SCHEMA_ERRORS = 5
AGENT_SCHEMA_ID = "urn:cadenza:schema:agent:v1"
"""Default ``$id``; the gateway passes its public URL of the schema instead."""

_MODEL_RE = re.compile(MODEL_PATTERN)
_REF_RE = re.compile(AGENT_REF_PATTERN)

AgentName = Annotated[str, StringConstraints(pattern=AGENT_NAME_PATTERN)]
ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]


class AgentValidationError(SpecValidationError):
    """An agent definition is invalid; ``errors`` lists every problem found."""

    code = "invalid_agent"

    def _summary(self) -> str:
        return super()._summary().replace("invalid workflow spec", "invalid agent spec", 1)


class AgentBudget(BaseModel):
    """Spending limits of one agent task; the worker reserves each LLM call's worst case
    against them and does not make a call that does not fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    _integers = json_integers("max_tokens")

    max_tokens: int | None = Field(
        default=None, ge=1, description="Most input + output tokens the agent may use."
    )
    max_usd: float | None = Field(
        strict=True,
        default=None,
        ge=0,
        description="Most it may cost, in US dollars (price table).",
    )


class AgentSpec(BaseModel):
    """One version of an agent: prompt, model, tools, limits."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Cadenza agent")

    _integers = json_integers("max_iterations")

    name: str = Field(
        pattern=AGENT_NAME_PATTERN,
        description="Agent name: lowercase letters, digits, '_', '.', '-' (max 63).",
    )
    description: str | None = Field(
        default=None, max_length=10_000, description="What the agent does."
    )
    role: str | None = Field(
        default=None, max_length=2_000, description="Its role, for people (free text)."
    )
    system_prompt: str = Field(
        min_length=1,
        max_length=MAX_SYSTEM_PROMPT,
        description="The system message every conversation of this agent starts with.",
    )
    model: str = Field(
        max_length=320,
        description="'provider:model', e.g. 'local:smollm2-135m'; providers are 'local', "
        "'replay' and the OpenAI-compatible ones configured on the workers.",
        json_schema_extra={"pattern": MODEL_PATTERN},
    )
    temperature: float = Field(
        strict=True,
        default=0.0,
        ge=0,
        le=2,
        description="Sampling temperature (0 = most deterministic).",
    )
    tools: list[ToolName] = Field(
        default_factory=list,
        max_length=MAX_TOOLS,
        json_schema_extra={"uniqueItems": True},
        description="Tools the agent may call (an allowlist of names in the workers' "
        "registry; a call to any other tool is refused).",
    )
    tool_choice: Literal["auto", "required"] = Field(
        default="auto",
        description="'auto': the model decides whether to call a tool. 'required': its first "
        "turn must call one (e.g. rag_search, to ground the answer); after the first tool "
        "result it decides again, so the loop cannot spin on forced calls.",
    )
    max_iterations: int = Field(
        default=8,
        ge=1,
        le=MAX_ITERATIONS,
        description="Most model turns before the agent stops without a final answer.",
    )
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema the final answer must satisfy (it must be a valid schema); "
        "without it the answer is free text.",
    )
    budget: AgentBudget | None = Field(
        default=None,
        description="Optional token and cost limits of each task this agent runs (all its "
        "attempts together); reserved before every LLM call.",
    )
    guardrails: GuardrailPolicy | None = Field(
        default=None,
        description="Output checks (PII) on the agent's answers and tool-call arguments.",
    )
    approval: ApprovalPolicy | None = Field(
        default=None,
        description="Which tool calls wait for a person's approval (docs/guardrails.md); "
        "without it, http_request writes to hosts not allowlisted on the workers do.",
    )
    handoffs: list[AgentName] = Field(
        default_factory=list,
        max_length=MAX_HANDOFFS,
        json_schema_extra={"uniqueItems": True},
        description="Agents this one may hand the conversation to (registered names).",
    )

    @field_validator("model", mode="after")
    @classmethod
    def _provider_and_model(cls, value: str) -> str:
        if not _MODEL_RE.match(value):
            raise ValueError(
                "must be 'provider:model' (e.g. 'local:smollm2-135m'): a lowercase provider "
                "name, ':', then the model name without spaces"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """The agent as stored: every field, defaults filled in, absent optionals omitted —
        so a stored version keeps meaning the same even if a default changes later."""
        return self.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------- references


def parse_agent_ref(ref: str) -> tuple[str, int | None]:
    """``name`` → (name, None); ``name@3`` → (name, 3). ``ValueError`` if malformed."""
    if not _REF_RE.match(ref):
        raise ValueError(
            f"{ref!r} is not an agent reference: use 'name' or 'name@version' (name: "
            "lowercase letters, digits, '_', '.', '-'; version: a positive integer)"
        )
    name, _, version = ref.partition("@")
    return name, int(version) if version else None


def format_agent_ref(name: str, version: int) -> str:
    """(name, 3) → ``name@3``: what a run's pinned task carries."""
    return f"{name}@{version}"


# --------------------------------------------------------------------------- parsing


def _at(code: ErrorCode, field: str, detail: str) -> SpecError:
    """A :class:`SpecError` whose message says 'agent' (not 'workflow') for the document."""
    return SpecError(
        field=field, code=code, message=f"{f'field {field}' if field else 'agent'}: {detail}"
    )


def _as_agent_errors(errors: Iterable[SpecError]) -> AgentValidationError:
    return AgentValidationError(
        _at(e.code, e.field, e.message.split(": ", 1)[-1]) if not e.field else e for e in errors
    )


_AGENT_FIELDS = [
    *AgentSpec.model_fields,
    *AgentBudget.model_fields,
    *ApprovalPolicy.model_fields,
    *GuardrailPolicy.model_fields,
    *PiiPolicy.model_fields,
]


def parse_agent(
    source: str | bytes | Mapping[str, Any], content_type: str | None = None
) -> AgentSpec:
    """Parse an agent from YAML/JSON text or a dict (shape only; a top-level ``$schema``
    key is ignored). Raises :class:`AgentValidationError` listing every problem."""
    try:
        data = load_document(source, content_type) if isinstance(source, str | bytes) else source
    except SpecValidationError as exc:
        raise _as_agent_errors(exc.errors) from None
    if not isinstance(data, Mapping):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        raise AgentValidationError(
            [_at(ErrorCode.INVALID_SYNTAX, "", f"must be a mapping, got {kind}")]
        )
    doc = {k: v for k, v in data.items() if k != "$schema"}
    try:
        return AgentSpec.model_validate(doc)
    except ValidationError as exc:
        # Suggestions for unknown fields come from the agent's (and its budget's) fields.
        errors = errors_from_pydantic(exc, doc, {"workflow": _AGENT_FIELDS})
        raise _as_agent_errors(errors) from None


# --------------------------------------------------------------------------- validation


def _duplicates(names: list[str], field: str, what: str) -> list[SpecError]:
    first: dict[str, int] = {}
    errors = []
    for i, name in enumerate(names):
        if name in first:
            detail = f"{what} '{name}' is listed twice (first at {field}[{first[name]}])"
            errors.append(_at(ErrorCode.INVALID_FIELD, f"{field}[{i}]", detail))
        first.setdefault(name, i)
    return errors


def output_schema_errors(
    schema: Mapping[str, Any], field: str = "output_schema"
) -> list[SpecError]:
    """Problems that make ``schema`` an invalid JSON Schema (its ``$schema`` dialect, else
    draft 2020-12), at most :data:`MAX_SCHEMA_ERRORS`, each naming where in the schema."""
    cls = validator_for(schema, default=Draft202012Validator)
    found = list(cls(cls.META_SCHEMA).iter_errors(schema))
    if not found:
        return []
    # The most relevant error first, then the rest in document order.
    top = best_match(found)
    ordered = [top, *(e for e in found if e is not top)][:MAX_SCHEMA_ERRORS]
    errors = []
    for err in ordered:
        where = format_path([field, *err.absolute_path]) if err.absolute_path else field
        errors.append(
            _at(ErrorCode.INVALID_FIELD, where, f"not a valid JSON Schema: {err.message}")
        )
    return errors


def validate_agent(spec: AgentSpec, known_tools: Collection[str] | None = None) -> None:
    """Check what the model cannot: tools and handoffs listed once, no handoff to itself,
    ``output_schema`` a valid JSON Schema and (given ``known_tools``) every tool known.
    Raises :class:`AgentValidationError`. Handoff targets are checked by whoever knows
    the registered agents (the gateway)."""
    errors = _duplicates(spec.tools, "tools", "tool")
    errors += _duplicates(spec.handoffs, "handoffs", "handoff")
    for i, target in enumerate(spec.handoffs):
        if target == spec.name:
            detail = f"agent '{spec.name}' cannot hand off to itself"
            errors.append(_at(ErrorCode.SELF_DEPENDENCY, f"handoffs[{i}]", detail))
    if spec.tool_choice == "required" and not (spec.tools or spec.handoffs):
        detail = "'required' needs at least one tool (or handoff) to call"
        errors.append(_at(ErrorCode.INVALID_FIELD, "tool_choice", detail))
    if known_tools is not None:
        for i, tool in enumerate(spec.tools):
            if tool not in known_tools:
                close = difflib.get_close_matches(tool, list(known_tools), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                available = ", ".join(sorted(known_tools)) or "none"
                detail = f"unknown tool '{tool}'{hint} (available: {available})"
                errors.append(_at(ErrorCode.UNKNOWN_TOOL, f"tools[{i}]", detail))
    if spec.output_schema is not None:
        errors += output_schema_errors(spec.output_schema)
    if errors:
        raise AgentValidationError(errors)


def load_agent(
    source: str | bytes | Mapping[str, Any],
    content_type: str | None = None,
    known_tools: Collection[str] | None = None,
) -> AgentSpec:
    """:func:`parse_agent` then :func:`validate_agent`; raises :class:`AgentValidationError`."""
    spec = parse_agent(source, content_type)
    validate_agent(spec, known_tools)
    return spec


# --------------------------------------------------------------------------- JSON Schema


def agent_json_schema(schema_id: str = AGENT_SCHEMA_ID) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of an agent document, generated from :class:`AgentSpec`.
    It checks shape; uniqueness, handoff targets and known tools are checked on registration."""
    generated = AgentSpec.model_json_schema(mode="validation")
    return published_schema(generated, schema_id, "Cadenza agent")
