"""Settings of the trigger service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TriggerSettings(BaseSettings):
    """Env prefix ``CADENZA_TRIGGER_``."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_TRIGGER_", extra="ignore")

    consumer_enabled: bool = Field(
        default=True, description="Consume the topics of enabled triggers."
    )
    scheduler_enabled: bool = Field(default=True, description="Fire due cron schedules.")
    group: str = Field(
        default="trigger",
        description="Consumer group of the upstream topics (prefixed like every group); "
        "processes of one group share the partitions.",
    )
    concurrency: int = Field(default=16, ge=1, description="Events handled at once.")
    reload_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often the trigger definitions are re-read (a new topic is subscribed "
        "within this delay).",
    )
    schedule_poll_s: float = Field(
        default=0.5, gt=0, description="How often due schedules are looked for."
    )
    schedule_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="A tick this late still fires as on time; older ticks are missed and the "
        "schedule's catch-up policy decides.",
    )
    schedule_batch: int = Field(default=50, ge=1, description="Schedules claimed per pass.")
    max_active_runs: int = Field(
        default=0,
        ge=0,
        description="Backpressure: while a tenant has this many unfinished runs, its events "
        "wait (consumption pauses) instead of starting more; 0 = unlimited. Set it like the "
        "gateway's CADENZA_GATEWAY_AUTH_MAX_ACTIVE_RUNS.",
    )
    tenant_max_active_runs: dict[str, int] = Field(
        default_factory=dict, description="Per-tenant overrides of `max_active_runs` (JSON)."
    )
    backpressure_poll_s: float = Field(
        default=1.0, gt=0, description="How often a paused event re-checks its tenant's runs."
    )
    ledger_retention_days: float = Field(
        default=0,
        ge=0,
        description="Delete dedupe ledger rows (`triggered_events`, `schedule_fires`) older "
        "than this many days; 0 keeps them forever. Keep it longer than the upstream topics' "
        "retention: an event redelivered or replayed after its row is gone starts a second "
        'run (docs/state.md, "Retention").',
    )
    ledger_retention_interval_s: float = Field(
        default=3600.0, gt=0, description="Seconds between two ledger retention passes."
    )
    ledger_retention_batch_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Ledger rows deleted per transaction of a pass.",
    )
    metrics_port: int = Field(
        default=9106, ge=0, description="Prometheus /metrics port (0 disables)."
    )
