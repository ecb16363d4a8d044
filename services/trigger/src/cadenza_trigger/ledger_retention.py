"""The ledger retention loop: every ``ledger_retention_interval_s``, delete the dedupe
ledger rows older than ``ledger_retention_days`` (``cadenza_triggers.prune_ledgers``; paged,
so every trigger process may run it at once). Off (no task at all) while the days are 0."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from cadenza_runtime import Resources
from cadenza_runtime.periodic import Periodic
from cadenza_state import utcnow
from cadenza_triggers import LedgerPruned, prune_ledgers
from opentelemetry import trace

from . import metrics
from .settings import TriggerSettings

log = logging.getLogger("cadenza.trigger.retention")
tracer = trace.get_tracer("cadenza.trigger")


class LedgerRetention:
    def __init__(self, resources: Resources, settings: TriggerSettings) -> None:
        self._resources = resources
        self._settings = settings
        self._periodic = Periodic(
            "ledger-retention",
            self.prune_once,
            settings.ledger_retention_interval_s,
            log=log,
            passes=metrics.LEDGER_PASSES,
            last_success=metrics.LEDGER_LAST_SUCCESS,
        )

    @property
    def running(self) -> bool:
        return self._periodic.running

    async def start(self) -> None:
        if self._settings.ledger_retention_days:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self._settings.ledger_retention_days)

    async def prune_once(self, now: datetime | None = None) -> LedgerPruned:
        """One pass, as if at ``now``; nothing while the days are 0 (keep every row)."""
        if not self._settings.ledger_retention_days:
            return LedgerPruned()
        before = self.cutoff(now or utcnow())
        with tracer.start_as_current_span(
            "cadenza.trigger.ledger_retention",
            attributes={"cadenza.retention.cutoff": before.isoformat()},
        ) as span:
            pruned = await prune_ledgers(
                self._resources.sessions, before, self._settings.ledger_retention_batch_size
            )
            span.set_attribute("cadenza.retention.triggered_events", pruned.triggered_events)
            span.set_attribute("cadenza.retention.schedule_fires", pruned.schedule_fires)
        metrics.LEDGER_ROWS.labels("triggered_events").inc(pruned.triggered_events)
        metrics.LEDGER_ROWS.labels("schedule_fires").inc(pruned.schedule_fires)
        if pruned.triggered_events or pruned.schedule_fires:
            log.info(
                "ledger retention: deleted %d triggered event(s) and %d schedule fire(s) "
                "older than %s",
                pruned.triggered_events,
                pruned.schedule_fires,
                before.isoformat(),
            )
        return pruned
