"""Output checks of agents (PII): detection, the policy's action, and its records."""

from .check import (
    GuardrailViolatedError,
    PiiGuard,
    Verdict,
    enforce,
    trace_verdict,
    violation,
)
from .pii import Finding, detect, mask, redact

__all__ = [
    "Finding",
    "GuardrailViolatedError",
    "PiiGuard",
    "Verdict",
    "detect",
    "enforce",
    "mask",
    "redact",
    "trace_verdict",
    "violation",
]
