"""Prometheus metrics of budgets (bounded labels: scope, outcome, tenant, period)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RESERVATIONS = Counter(
    "cadenza_budget_reservations_total",
    "Budget reservations before LLM calls, by outcome (reserved, refused) and, for a "
    "refusal, the scope that refused (task, run, tenant_day, tenant_month).",
    ["outcome", "scope"],
)
RELEASED = Counter(
    "cadenza_budget_reservations_released_total",
    "Reservations released by the reconciler after their expiry (their worker died or hung).",
)
EXCEEDED = Counter(
    "cadenza_budget_exceeded_total",
    "Agent tasks stopped because a budget ran out, by scope and unit.",
    ["scope", "unit"],
)
TENANT_USED = Gauge(
    "cadenza_budget_tenant_used",
    "A tenant's spend (settled + reserved) in the current period, as last seen by a worker.",
    ["tenant", "period", "unit"],
)
TENANT_LIMIT = Gauge(
    "cadenza_budget_tenant_limit",
    "A tenant's budget for the period (unit tokens or usd).",
    ["tenant", "period", "unit"],
)
