"""Prometheus metrics of agent loops (bounded labels: agent names without versions)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

AGENT_TURNS = Counter(
    "cadenza_agent_turns_total",
    "LLM turns of agent loops, by agent and outcome (tool_calls, final, invalid, error).",
    ["agent", "outcome"],
)
AGENT_TOOL_CALLS = Counter(
    "cadenza_agent_tool_calls_total",
    "Tool calls agents made, by agent and status (ok, error, refused, timeout, invalid_args).",
    ["agent", "status"],
)
AGENT_RESUMES = Counter(
    "cadenza_agent_resumes_total",
    "Agent loops resumed from a checkpoint instead of starting over (after a crash).",
    ["agent"],
)
AGENT_HANDOFFS = Counter(
    "cadenza_agent_handoffs_total", "Agents handing their task to another agent.", ["agent"]
)
AGENT_TURN_OVERHEAD = Histogram(
    "cadenza_agent_step_overhead_seconds",
    "Time an agent step spends outside the model call (checkpoint, accounting, tools).",
    ["agent"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
AGENT_TOKENS = Counter(
    "cadenza_agent_llm_tokens_total",
    "LLM tokens used by agents, by tenant, agent, model and direction (input, output).",
    ["tenant", "agent", "model", "direction"],
)
AGENT_COST = Counter(
    "cadenza_agent_llm_cost_usd_total",
    "Cost of agents' LLM calls in US dollars (price table), by tenant, agent and model.",
    ["tenant", "agent", "model"],
)
PROVIDER_RESOLUTIONS = Counter(
    "cadenza_agent_provider_resolutions_total",
    "LLM providers an agent step resolved to a non-built-in name, by whose endpoint it used: "
    "`tenant` (the run's tenant's own key, BYOK) or `deployment` (CADENZA_LLM_PROVIDERS).",
    ["source"],
)
