"""Names of the tools every worker ships; the gateway validates specs against this set and
the worker's registry must provide each of them."""

from __future__ import annotations

BUILTIN_TOOLS: frozenset[str] = frozenset(
    {
        "transform",
        "http_request",
        "sleep",
        "flaky",
        "noop",
        # for agents (and tool tasks): cadenza_worker/tools/agent_builtins.py
        "calculator",
        "current_time",
        # document retrieval: cadenza_worker/tools/rag.py
        "rag_search",
        # reference-data lookups: cadenza_worker/tools/reference.py
        "get_transaction",
        "get_psp_status",
        "check_routing_logs",
        "get_customer",
        "get_ticket",
    }
)
