"""Prometheus metrics of the worker (served on `metrics_port`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
)  # fmt: skip
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

# `kind` is the task kind (tool, agent); `name` the executor's bounded label: the tool's
# name, or the agent's name without its version.
DISPATCH_LATENCY = Histogram(
    "cadenza_worker_dispatch_latency_seconds",
    "Time from task.ready (its ready_at) to a worker starting the task, by kind and name.",
    ["kind", "name"],
    buckets=_LATENCY_BUCKETS,
)
TASK_DURATION = Histogram(
    "cadenza_worker_task_duration_seconds",
    "Time to run one task attempt (all tries and backoffs), by kind, name and final status.",
    ["kind", "name", "status"],
    buckets=_DURATION_BUCKETS,
)
TASKS = Counter(
    "cadenza_worker_tasks_total",
    "Task attempts finished, by kind, name and status.",
    ["kind", "name", "status"],
)
TRIES = Counter("cadenza_worker_task_tries_total", "Executions of a task (tries).", ["tool"])
RETRIES = Counter(
    "cadenza_worker_task_retries_total",
    "Tries that failed with a retryable error and were retried, by tool and error code.",
    ["tool", "code"],
)
SKIPPED = Counter(
    "cadenza_worker_tasks_skipped_total",
    "task.ready messages acknowledged without running the task, by reason "
    "(done: its result was published already).",
    ["reason"],
)
LEASES_CONTENDED = Counter(
    "cadenza_worker_leases_contended_total",
    "task.ready messages whose task lease another worker held (a duplicate delivery).",
)
LEASES_LOST = Counter(
    "cadenza_worker_leases_lost_total",
    "Running tasks abandoned because their lease was taken over (worker presumed lost).",
)
HEARTBEAT_FAILURES = Counter(
    "cadenza_worker_heartbeat_failures_total",
    "Process heartbeats that could not reach Redis (tasks are presumed lost after the TTL).",
)
TASKS_STOPPED = Counter(
    "cadenza_worker_tasks_stopped_total",
    "Attempts in flight stopped because their run stopped, by how the worker learned it: "
    "broadcast (a run.stopped on run.control, at once) or heartbeat (the Redis marker, "
    "read every lease_ttl/3: a broadcast this process missed).",
    ["source"],
)
IN_FLIGHT = Gauge("cadenza_worker_tasks_in_flight", "Tasks running on this worker now.")
TOOL_CALLS = Counter(
    "cadenza_worker_tool_calls_total",
    "Tool calls by outcome (ok, error, replayed from the effect journal).",
    ["tool", "outcome"],
)
TOOL_DURATION = Histogram(
    "cadenza_worker_tool_call_duration_seconds",
    "Duration of one tool call.",
    ["tool"],
    buckets=_DURATION_BUCKETS,
)
CLAIM_CHECKS = Counter(
    "cadenza_worker_claim_checks_total",
    "Payloads moved through the object store (params_in, output_out).",
    ["direction"],
)
HOLDS = Counter(
    "cadenza_worker_holds_total",
    "Tool calls held for a person instead of being made, by kind (approval, in_doubt) and tool.",
    ["kind", "tool"],
)
HELD_CALLS_RESUMED = Counter(
    "cadenza_worker_held_calls_resumed_total",
    "Held tool calls picked up again after a person answered, by kind and answer.",
    ["kind", "decision"],
)
SCRIPT_BATCH_CALLS = Histogram(
    "cadenza_worker_redis_script_batch_calls",
    "Claim/finish script calls sent together per turn of the loop (one pipeline; one alone: "
    "a plain EVALSHA).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
STORE_OUTAGES = Counter(
    "cadenza_worker_store_outages_total",
    "Attempts paused because a platform store (redis, postgresql, minio) was away while the "
    "attempt used it: the engine's calls or a tool's through its context. No try is spent; "
    "the bus holds the task.ready until the store is back.",
    ["store"],
)
for _store in ("redis", "postgresql", "minio"):
    STORE_OUTAGES.labels(_store)  # exported at 0: a first outage shows in rate() at once
DISPATCH_CHECKS = Counter(
    "cadenza_worker_dispatch_checks_total",
    "Attempts that checked their dispatch was committed before their first side effect "
    "(a journaled tool call, an agent's first turn), by outcome: committed (at once), "
    "waited (sent before its commit: the early dispatch), not_committed (given up).",
    ["outcome"],
)
for _outcome in ("committed", "waited", "not_committed"):  # every series from the start
    DISPATCH_CHECKS.labels(_outcome)
