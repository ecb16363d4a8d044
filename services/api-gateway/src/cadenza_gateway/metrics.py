"""Prometheus metrics of the gateway (names ``cadenza_gateway_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "cadenza_gateway_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
REQUEST_LATENCY = Histogram(
    "cadenza_gateway_request_duration_seconds",
    "Time to the first byte of the answer to an HTTP request (for an event stream: to "
    "open it), by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge("cadenza_gateway_requests_in_flight", "HTTP requests being handled now.")
RUNS_ACCEPTED = Counter(
    "cadenza_gateway_runs_accepted_total", "Runs created (not idempotent replays).", ["tenant"]
)
RUNS_REPLAYED = Counter(
    "cadenza_gateway_runs_replayed_total",
    "Runs created as a rerun or fork of an earlier run, by kind (rerun, fork).",
    ["kind"],
)
CALLS_SERVED = Counter(
    "cadenza_gateway_calls_served_total",
    "Recorded LLM and tool calls returned by the call-inspection endpoints, by kind.",
    ["kind"],
)
IDEMPOTENT_REPLAYS = Counter(
    "cadenza_gateway_idempotent_replays_total",
    "Run requests answered with an existing run because the Idempotency-Key was seen before.",
    ["tenant"],
)
RUNS_CANCELLED = Counter(
    "cadenza_gateway_runs_cancelled_total", "Cancels requested through the API.", ["tenant"]
)
RUNS_RESUMED = Counter(
    "cadenza_gateway_runs_resumed_total",
    "Resumes of paused runs requested through the API.",
    ["tenant"],
)
WORKFLOW_VERSIONS = Counter(
    "cadenza_gateway_workflow_versions_total", "Workflow versions registered.", ["tenant"]
)
AGENT_VERSIONS = Counter(
    "cadenza_gateway_agent_versions_total", "Agent versions registered.", ["tenant"]
)
AGENTS_PINNED = Counter(
    "cadenza_gateway_agents_pinned_total",
    "Agent versions pinned into new runs (tasks' agents plus those reachable by handoff).",
)
SPEC_ERRORS = Counter(
    "cadenza_gateway_spec_errors_total",
    "Problems found in submitted workflow specs and run inputs, by error code.",
    ["code"],
)
WRITE_CONFLICTS = Counter(
    "cadenza_gateway_write_conflicts_total",
    "Unique-constraint races retried or resolved (concurrent version / idempotency key).",
    ["kind"],
)
READINESS_FAILURES = Counter(
    "cadenza_gateway_readiness_failures_total", "Failed /readyz dependency checks.", ["check"]
)
UNAVAILABLE = Counter(
    "cadenza_gateway_unavailable_total",
    "Requests answered 503 because a backing store (database, Redis, object store, broker) "
    "was down.",
)
HOLD_DECISIONS = Counter(
    "cadenza_gateway_hold_decisions_total",
    "Answers to held tool calls, by kind (approval, in_doubt) and decision.",
    ["kind", "decision"],
)
DEAD_LETTER_ACTIONS = Counter(
    "cadenza_gateway_dead_letter_actions_total",
    "Dead letters replayed or discarded by operators.",
    ["action"],
)
EVALUATIONS = Counter(
    "cadenza_gateway_evaluations_total",
    "Evaluation results stored (`cadenza eval`), by suite and outcome: passed, failed (a case "
    "failed) or regressed (worse than the baseline version).",
    ["tenant", "suite", "outcome"],
)
