"""Apply a PII policy to an agent's answer or a tool call's arguments, and record what was
found: a run event, a span following the (in-development) OpenTelemetry GenAI guardrail
conventions — ``apply_guardrail`` with ``gen_ai.security.*`` attributes and one
``gen_ai.security.finding`` event per finding — and a metric."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cadenza_events import NonRetryableError
from cadenza_workflow import PiiPolicy
from opentelemetry import trace

from . import metrics
from .pii import Finding, detect, redact
from .plugins import Detector, run_detectors

tracer = trace.get_tracer("cadenza.worker")

CHECK = "pii"
# Cadenza's action → the conventions' gen_ai.security.decision.type.
DECISIONS = {"block": "deny", "redact": "modify", "flag": "warn"}
# Cadenza's target → gen_ai.security.target.type.
TARGET_TYPES = {"output": "llm_output", "tool_arguments": "tool_call"}


class GuardrailViolatedError(NonRetryableError):
    """A guardrail with action ``block`` found something: the task fails."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, code="guardrail_violated", details=details)


@dataclass
class Verdict:
    target: str
    action: str
    findings: list[Finding] = field(default_factory=list)
    value: Any = None  # what goes on (redacted when the action is redact)

    def record(self, agent: str, where: str) -> dict[str, Any]:
        """The run event's data: which check, what was found (masked) and the action."""
        return {
            "check": CHECK,
            "agent": agent,
            "target": self.target,
            "where": where,
            "action": self.action,
            "findings": [f.as_dict() for f in self.findings],
        }


def _walk(value: Any, visit: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return visit(value)
    if isinstance(value, dict):
        return {k: _walk(v, visit) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, visit) for v in value]
    return value


class PiiGuard:
    def __init__(self, policy: PiiPolicy, detectors: Sequence[Detector] = ()) -> None:
        self.policy = policy
        self.detectors = detectors  # plugged in by the operator (names…): plugins.py

    def check(self, value: Any, target: str) -> Verdict | None:
        """None when ``target`` is not checked or nothing was found."""
        if target not in self.policy.targets:
            return None
        findings: list[Finding] = []

        def visit(text: str) -> str:
            extra = run_detectors(self.detectors, text) if self.detectors else ()
            found = detect(text, self.policy.entities, self.policy.phone_regions, extra)
            findings.extend(found)
            return redact(text, found) if found else text

        redacted = _walk(value, visit)
        if not findings:
            metrics.CHECKS.labels(CHECK, target, "pass").inc()
            return None
        action = self.policy.action
        metrics.CHECKS.labels(CHECK, target, action).inc()
        for f in findings:
            metrics.FINDINGS.labels(CHECK, f.entity, action).inc()
        return Verdict(target, action, findings, redacted if action == "redact" else value)


def trace_verdict(verdict: Verdict, agent: str, target_id: str | None) -> None:
    """One ``apply_guardrail`` span (child of the agent's span) with a finding event each."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "apply_guardrail",
        "gen_ai.agent.name": agent,
        "gen_ai.guardian.name": "cadenza.pii",
        "gen_ai.guardian.provider.name": "cadenza",
        "gen_ai.security.target.type": TARGET_TYPES.get(verdict.target, verdict.target),
        "gen_ai.security.decision.type": DECISIONS[verdict.action],
        "gen_ai.security.decision.reason": f"pii detected ({verdict.action})",
        "gen_ai.security.content.redacted": verdict.action == "redact",
    }
    if target_id:
        attributes["gen_ai.security.target.id"] = target_id
    with tracer.start_as_current_span("apply_guardrail cadenza.pii", attributes=attributes) as span:
        for f in verdict.findings:
            span.add_event(
                "gen_ai.security.finding",
                {
                    "gen_ai.security.risk.category": "pii",
                    "gen_ai.security.risk.severity": "high"
                    if f.entity in {"credit_card", "iban", "national_id"}
                    else "medium",
                    "gen_ai.security.risk.metadata": [f"entity:{f.entity}", f"value:{f.preview}"],
                    "gen_ai.security.policy.id": f"pii.{verdict.action}",
                },
            )


def violation(verdict: Verdict, agent: str, where: str) -> GuardrailViolatedError:
    kinds = sorted({f.entity for f in verdict.findings})
    return GuardrailViolatedError(
        f"agent {agent!r}: {', '.join(kinds)} found in {where} (policy: block)",
        verdict.record(agent, where),
    )


def enforce(
    guard: PiiGuard | None,
    value: Any,
    *,
    target: str,
    agent: str,
    where: str,
    target_id: str | None,
    emit: Callable[[str, dict[str, Any]], None],
) -> Any:
    """Check ``value``; record any finding (run event ``guardrail.check``, span, metric);
    return the value to go on with (redacted for ``redact``) or raise for ``block``."""
    verdict = guard.check(value, target) if guard is not None else None
    if verdict is None:
        return value
    emit("guardrail.check", verdict.record(agent, where))
    trace_verdict(verdict, agent, target_id)
    if verdict.action == "block":
        raise violation(verdict, agent, where)
    return verdict.value
