"""Orchestrator settings (env prefix ``CADENZA_ORCHESTRATOR_``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrchestratorSettings(BaseSettings):
    """How the orchestrator consumes, dispatches and sweeps."""

    model_config = SettingsConfigDict(
        env_prefix="CADENZA_ORCHESTRATOR_", extra="ignore", populate_by_name=True
    )

    group: str = Field(
        default="cadenza-orchestrator",
        description="Consumer group of the plan.requested and task.result consumer.",
    )
    consumer_concurrency: int = Field(
        default=1000,
        ge=1,
        description="Events fetched and being applied at once, over all partitions; one "
        "partition's fetched events are applied as one batch in one transaction (a run's "
        "events stay in order).",
    )
    batches_in_flight: int = Field(
        default=1,
        ge=1,
        description="Partitions' batches of one topic applied at once. 1: one transaction at "
        "a time for task.result and one for plan.requested; events fetched meanwhile join "
        "their partition's next batch, so under load a batch carries more events and the "
        "per-batch cost (lock, round trips, commit) is paid less often, and no batch waits "
        "behind the awaits of many others (docs/orchestrator.md).",
    )
    unlocked_batches: bool = Field(
        default=True,
        description="Apply a batch of plan.requested or of task.result without a transaction "
        "of its own (PostgreSQL): runs and rows are read with no lock and the batch written "
        "as ONE statement that holds only while no run's version moved since; no BEGIN, lock "
        "or COMMIT round trip. When a run was written meanwhile, nothing is written and the "
        "batch is applied the locked way. false: always the locked way "
        "(docs/orchestrator.md).",
    )
    timeline_linger_s: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="How long a commit's run.events record may wait for the records of the "
        "commits after it, to leave with them in one Kafka request (the outbox relay's "
        "linger): a chain of quick steps costs the broker one timeline request per "
        "linger instead of one per step. The run's "
        "event log and its live stream lag by as much; a task.ready never waits. 0: each "
        "commit's record at once.",
    )
    status_linger_s: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="How long a commit's run hot statuses (the Redis cache GET "
        "/v1/runs/{id}/status reads) may wait for those of the commits after it, to go to "
        "Redis in one pipeline: a chain of quick steps costs one round trip per linger "
        "instead of one per step. The cached status lags by as much (PostgreSQL has the "
        "truth at once). 0: each commit's at once.",
    )
    early_dispatch: bool = Field(
        default=True,
        description="A task.result or plan.requested batch applied without a lock hands its "
        "task.ready records to Kafka as its one statement goes to PostgreSQL, not after: a "
        "chain's next task, or a new run's first tasks, start a database round trip sooner. "
        "Safe because a worker runs an attempt once (its claim), makes no side effect before "
        "it sees the commit, and the dispatched task's result is applied after its cause: a "
        "batch whose statement did not hold is applied again, and dispatches the same "
        "attempts (docs/orchestrator.md, Early dispatch). Only with unlocked_batches. "
        "false: every task.ready after its commit.",
    )
    result_plan_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a task.result batch holding a result of a run whose plan is not "
        "applied yet (the plan's task.ready was sent before its commit and the orchestrator "
        "then died) waits for that plan, trying again whenever a plan commits, before "
        "ignoring the result as unknown (the sweeper's result_lost then runs the task "
        "again). 0: never wait.",
    )
    run_memory_rows: int = Field(
        default=100_000,
        ge=0,
        description="Task rows of the runs this process planned that it keeps in memory "
        "(least recently used out past this): a results batch of such a run reads nothing "
        "and writes ONE statement, guarded on the run's version. Only with "
        "unlocked_batches. 0: every batch reads its runs and rows (docs/orchestrator.md).",
    )
    dispatch_group_max: int = Field(
        default=16,
        ge=0,
        description="A transition that makes at most this many tool tasks of a run ready "
        "sends them to one task.ready partition (keyed by the run): one worker fetches, runs "
        "and reports them together, a tenth to a fifth less CPU per small run over all "
        "processes. "
        "Wider dispatches (fan-outs) and agent tasks are spread over every partition, one key "
        "per task. 0: always spread (docs/execution.md).",
    )
    handler_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Tries of a failing handler (e.g. database unreachable) before the event "
        "is dead-lettered.",
    )
    sweep_interval_s: float = Field(
        default=1.0, gt=0, description="Seconds between two sweeps for lost or stuck tasks."
    )
    sweep_min_age_s: float = Field(
        default=5.0,
        ge=0,
        description="Only tasks dispatched at least this long ago are examined: a worker "
        "cannot be presumed lost before its heartbeat TTL passed, and skipping the fresh "
        "ones keeps a sweep cheap while thousands of tasks are in flight.",
    )
    sweep_batch_size: int = Field(
        default=500,
        ge=1,
        description="Dispatched tasks examined per sweep, oldest first; the next sweep goes "
        "on after the last one examined, and the one that reaches the end starts over.",
    )
    retention_days: float = Field(
        default=0,
        ge=0,
        description="Delete the runs that finished more than this many days ago, whole (their "
        "tasks, attempts, holds, LLM and tool calls, checkpoints and objects); never a run "
        "that finished in the current UTC month, which tenant budgets count; and the dead "
        "letters replayed or discarded more than this many days ago. 0: keep every run and "
        'letter (docs/state.md, "Retention").',
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between two retention passes."
    )
    retention_batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,  # one statement's ids: SQLite caps the variables of one at 32,766
        description="Finished runs read, and deleted in one transaction, per page of a "
        "retention pass.",
    )
    max_dispatches: int = Field(
        default=5,
        ge=1,
        description="Dispatches of one task (first + re-dispatches after lost workers); when "
        "exhausted the task fails with code worker_lost.",
    )
    max_handoffs: int = Field(
        default=3,
        ge=0,
        le=20,
        description="How many times one agent task may be handed from agent to agent; one "
        "more handoff fails the task with code handoff_depth_exceeded.",
    )
    requeue_after_s: float = Field(
        default=300.0,
        gt=0,
        description="A dispatched task no worker has started (no started marker, no lease) "
        "for this long is dispatched again (belt and braces: the outbox already guarantees "
        "delivery).",
    )
    result_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A task whose worker published its result (done marker) this long ago but "
        "whose result was never applied is dispatched again (reason result_lost), so a lost "
        "result cannot leave a run running forever.",
    )
    claim_check_bytes: int = Field(
        default=262_144,
        ge=1,
        validation_alias=AliasChoices(
            "CADENZA_ORCHESTRATOR_CLAIM_CHECK_BYTES", "CADENZA_CLAIM_CHECK_BYTES"
        ),
        description="Rendered task params (and fan-in outputs) larger than this many bytes of "
        "JSON go to the object store; the event carries a reference. Also read from "
        "CADENZA_CLAIM_CHECK_BYTES.",
    )
    status_ttl_s: int = Field(
        default=86_400,
        ge=1,
        description="TTL of the Redis hot run status and of the run-cancelled marker.",
    )
    metrics_port: int = Field(
        default=9101, ge=0, description="Port of the Prometheus /metrics endpoint (0 disables)."
    )
    source: str = Field(
        default="/cadenza/orchestrator", description="CloudEvents source of emitted events."
    )
    refuse_insecure_defaults: bool = Field(
        default=False,
        description="Refuse to start while state settings hold the well-known local "
        "credentials (set true in production).",
    )
