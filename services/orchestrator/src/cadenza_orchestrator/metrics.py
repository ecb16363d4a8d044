"""Prometheus metrics of the orchestrator (``cadenza_orchestrator_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_FINISHED = Counter(
    "cadenza_orchestrator_runs_finished_total", "Runs that reached a terminal status.", ["status"]
)
RUNS_STARTED = Counter("cadenza_orchestrator_runs_started_total", "Runs planned and started.")
TASKS_DISPATCHED = Counter(
    "cadenza_orchestrator_tasks_dispatched_total",
    "task.ready events staged (first dispatches and re-dispatches).",
)
TASKS_GROUPED = Counter(
    "cadenza_orchestrator_tasks_grouped_total",
    "Tool tasks made ready a few at a time and sent to their run's task.ready partition "
    "together (OrchestratorSettings.dispatch_group_max); the rest go one key per task.",
)
TASKS_FINISHED = Counter(
    "cadenza_orchestrator_tasks_finished_total",
    "Task rows that reached a terminal status.",
    ["status"],
)
TASKS_REUSED = Counter(
    "cadenza_orchestrator_tasks_reused_total",
    "Tasks of a rerun or fork completed from a recorded output instead of running, by "
    "source (parent = the parent run's output under the same cache key, override = "
    "replaced by hand).",
    ["source"],
)
REDISPATCHES = Counter(
    "cadenza_orchestrator_redispatches_total",
    "Tasks dispatched again by the sweeper, by reason (worker_lost, not_started).",
    ["reason"],
)
for _reason in ("worker_lost", "not_started"):
    # Exported at 0 from the start: an alert's increase() then sees the first ones too (a
    # series born at its first increment has no earlier sample to rise from).
    REDISPATCHES.labels(_reason)
RESULTS_IGNORED = Counter(
    "cadenza_orchestrator_results_ignored_total",
    "task.result events that changed nothing, by reason (duplicate, stale_attempt…).",
    ["reason"],
)
RUN_TURN_WAITS = Counter(
    "cadenza_orchestrator_run_turn_waits_total",
    "Times a writer of runs (batch: a consumer's batch; sweep: the sweeper) waited for "
    "another writer of the same run in this process to end (one writer of a run at a "
    "time: turns.py).",
    ["writer"],
)
EARLY_DISPATCH = Counter(
    "cadenza_orchestrator_early_dispatch_total",
    "task.ready records a task.result or plan.requested batch handed to Kafka as its "
    "statement left, before the commit (early_dispatch), by what became of the statement: "
    "committed; "
    "applied_again (a run moved meanwhile: the batch was applied the locked way, and its "
    "task.ready sent again; a worker runs each attempt once); failed (the batch raised: "
    "it is retried).",
    ["outcome"],
)
RESULTS_BEHIND_DISPATCH = Counter(
    "cadenza_orchestrator_results_behind_dispatch_total",
    "task.result events applied in the same batch as the result whose transition "
    "dispatched their attempt: a task.ready sent before its batch committed (early "
    "dispatch) whose batch was applied again after a crash or a rebalance.",
)
RESULTS_BEFORE_PLAN = Counter(
    "cadenza_orchestrator_results_before_plan_total",
    "task.result batches that held a result of a run whose plan was not applied yet (a "
    "plan's task.ready sent before its commit, the orchestrator then died): waited (one "
    "wait of such a batch for a plan to commit, at most 250 ms, before it is applied again; "
    "a batch may wait several times); given_up (a run whose plan did not come within "
    "result_plan_wait_s: its results were ignored as unknown).",
    ["outcome"],
)
PLANS_IGNORED = Counter(
    "cadenza_orchestrator_plans_ignored_total",
    "plan.requested events that changed nothing (duplicate, unknown_run).",
    ["reason"],
)
RUN_MEMORY = Counter(
    "cadenza_orchestrator_run_memory_total",
    "Runs of batches applied without a lock, by whether the run was held whole in memory "
    "(hit: nothing read for it), a new run whose plan.requested carried its row (carried: "
    "nothing read), read whole from the database and held from then on (rebuilt), or "
    "read in part from the database (miss).",
    ["outcome"],
)
RUN_MEMORY_REBALANCED = Counter(
    "cadenza_orchestrator_run_memory_rebalanced_total",
    "Runs held in memory at a rebalance, by whether their partitions came straight back "
    "(kept: their next batches read nothing) or went elsewhere (forgotten).",
    ["outcome"],
)
RUN_MEMORY_ROWS = Gauge(
    "cadenza_orchestrator_run_memory_rows",
    "Task rows of the runs held whole in memory (bounded by CADENZA_ORCHESTRATOR_RUN_MEMORY_ROWS).",
)
BATCHES_LOCKED_AGAIN = Counter(
    "cadenza_orchestrator_batches_locked_again_total",
    "Batches applied without a lock that wrote nothing and were applied again the locked "
    "way, by event (plan.requested, task.result) and reason (changed: a run's version "
    "moved between the read and the write; conflict: a row was there already).",
    ["event", "reason"],
)
CANCELS = Counter(
    "cadenza_orchestrator_cancels_total",
    "Cancel commands: applied, or ignored because the run had already finished (a repeated "
    "cancel of a cancelled run re-sends the workers' stop marker).",
    ["outcome"],
)
BUDGET_PAUSES = Counter(
    "cadenza_orchestrator_budget_pauses_total",
    "Tasks held because a budget with on_exceeded: pause ran out (each pauses its run), by "
    "budget scope (run, tenant_day, tenant_month).",
    ["scope"],
)
RESUMES = Counter(
    "cadenza_orchestrator_resumes_total",
    "Resume commands: applied, or ignored because the run was not paused.",
    ["outcome"],
)
TRANSITION_SECONDS = Histogram(
    "cadenza_orchestrator_transition_seconds",
    "Time to handle one event, from receipt to commit, by event (a batch's time shared "
    "by its events).",
    ["event"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PLAN_SECONDS = Histogram(
    "cadenza_orchestrator_plan_expansion_seconds",
    "Time to expand a plan: parse, validate, create task rows and stage the first dispatches.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASK_ROWS_LOADED = Counter(
    "cadenza_orchestrator_task_rows_loaded_total",
    "Task rows read from PostgreSQL by the orchestrator (its work per result must not grow "
    "with the size of the run: a few rows per result).",
)
RUN_ROWS_WRITTEN = Counter(
    "cadenza_orchestrator_run_rows_written_total",
    "Run rows the orchestrator updated (a batch writes its runs' changes at its end).",
)
TASK_ROWS_WRITTEN = Counter(
    "cadenza_orchestrator_task_rows_written_total",
    "Task rows the orchestrator wrote, by statement (insert, update).",
    ["statement"],
)
SWEEPS = Counter("cadenza_orchestrator_sweeps_total", "Sweeper passes.", ["outcome"])
SWEPT = Counter(
    "cadenza_orchestrator_swept_tasks_total",
    "Dispatched tasks the sweeper examined, by page: full (the next pass goes on after "
    "it) or last (the end was reached: the next pass starts again from the oldest).",
    ["page"],
)
BATCH_SECONDS = Histogram(
    "cadenza_orchestrator_batch_seconds",
    "Time to apply one consumer batch (all its runs' events) up to the commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HOT_STATUS_SENDS = Counter(
    "cadenza_orchestrator_hot_status_sends_total",
    "Redis pipelines of run hot statuses sent; commits per pipeline = "
    "cadenza_orchestrator_hot_status_commits_total / this (a linger gathers several).",
)
HOT_STATUS_COMMITS = Counter(
    "cadenza_orchestrator_hot_status_commits_total",
    "Commits whose run hot statuses were sent to Redis (HotStatusWrites).",
)
BATCH_PHASE_SECONDS = Histogram(
    "cadenza_orchestrator_batch_phase_seconds",
    "Where a consumer batch's time goes, by phase: apply (reading runs, the transitions, "
    "encoding their events), write (the batch's statement and its commit), then, beside the "
    "next batch: queued (waiting for the previous commit's records to be queued), publish (its "
    "outbox rows sent to Kafka and acknowledged), hot_status (the runs' Redis status, "
    "during publish: staged, and sent unless it lingers, "
    "CADENZA_ORCHESTRATOR_STATUS_LINGER_S). A task.ready is sent at the start of publish: "
    "apply + write + queued is the orchestrator's share of dispatch latency.",
    ["phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_EVENTS = Histogram(
    "cadenza_orchestrator_batch_events",
    "Events (plan.requested, task.result) applied in one transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
DISPATCH_LATENCY = Histogram(
    "cadenza_orchestrator_dispatch_latency_seconds",
    "Task dispatch latency, staged task.ready → a worker started it (from the result).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HOLDS = Counter(
    "cadenza_orchestrator_holds_total",
    "Tasks parked for a person, by kind: approval (a risky tool call) or in_doubt (an effect "
    "that may have happened).",
    ["kind"],
)
HOLDS_RESOLVED = Counter(
    "cadenza_orchestrator_holds_resolved_total",
    "Held tasks answered, by kind and decision (approved, rejected, expired, done, retry).",
    ["kind", "decision"],
)
DEAD_LETTERS_RECORDED = Counter(
    "cadenza_orchestrator_dead_letters_recorded_total",
    "Dead letters stored in the dead-letter inbox (PostgreSQL), by original topic.",
    ["topic"],
)
HOLDS_PENDING = Gauge(
    "cadenza_orchestrator_holds_pending",
    "Held tool calls waiting for a person now (the approvals inbox), by kind; counted by the "
    "sweeper on each pass.",
    ["kind"],
)

RETENTION_RUNS = Counter(
    "cadenza_orchestrator_retention_runs_deleted_total",
    "Finished runs deleted by retention (with their tasks, calls and checkpoints).",
)
RETENTION_OBJECTS = Counter(
    "cadenza_orchestrator_retention_objects_deleted_total",
    "Objects under runs/{id}/ deleted by retention.",
)
RETENTION_DEAD_LETTERS = Counter(
    "cadenza_orchestrator_retention_dead_letters_deleted_total",
    "Dead letters an operator replayed or discarded, deleted by retention.",
)
RETENTION_PASSES = Counter(
    "cadenza_orchestrator_retention_passes_total",
    "Retention passes, by outcome (ok, error).",
    ["outcome"],
)
for _outcome in ("ok", "error"):
    RETENTION_PASSES.labels(_outcome)
RETENTION_LAST_SUCCESS = Gauge(
    "cadenza_orchestrator_retention_last_success_timestamp_seconds",
    "Unix time of the last retention pass that finished without an error (0: none yet).",
)
RETENTION_PAGE_SECONDS = Histogram(
    "cadenza_orchestrator_retention_page_seconds",
    "Time to delete one page of runs: their objects, checkpoints and rows.",
)

# Every outcome's series exists from the start: a dashboard's increase() over it has data
# (zeros) before the first event, and the first event counts as an increase.
for _outcome in ("committed", "applied_again", "failed"):
    EARLY_DISPATCH.labels(_outcome)
for _event in ("plan.requested", "task.result"):
    for _reason in ("changed", "conflict"):
        BATCHES_LOCKED_AGAIN.labels(_event, _reason)
for _outcome in ("waited", "given_up"):
    RESULTS_BEFORE_PLAN.labels(_outcome)
for _writer in ("batch", "sweep"):
    RUN_TURN_WAITS.labels(_writer)
