"""Prometheus metrics of output checks (bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter

CHECKS = Counter(
    "cadenza_guardrail_checks_total",
    "Guardrail checks of agent outputs and tool arguments, by check (pii), target "
    "(output, tool_arguments) and result (pass, flag, redact, block).",
    ["check", "target", "result"],
)
FINDINGS = Counter(
    "cadenza_guardrail_findings_total",
    "What guardrail checks found, by check, entity (email, phone, ...) and action taken.",
    ["check", "entity", "action"],
)
