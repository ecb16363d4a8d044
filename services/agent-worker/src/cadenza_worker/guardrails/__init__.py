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
from .plugins import DetectorLoadError, load_detectors

__all__ = [
    "DetectorLoadError",
    "Finding",
    "GuardrailViolatedError",
    "PiiGuard",
    "Verdict",
    "detect",
    "enforce",
    "load_detectors",
    "mask",
    "redact",
    "trace_verdict",
    "violation",
]
