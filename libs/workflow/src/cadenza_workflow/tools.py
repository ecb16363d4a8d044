"""Names of the tools every worker ships; the gateway validates specs against this set and
the worker's registry must provide each of them."""

from __future__ import annotations

BUILTIN_TOOLS: frozenset[str] = frozenset({"transform", "http_request", "sleep", "flaky", "noop"})
