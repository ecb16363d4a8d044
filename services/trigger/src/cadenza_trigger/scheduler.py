"""The scheduler loop: every ``schedule_poll_s``, fire the due ticks of cron schedules
(``cadenza_triggers.fire_due``: claimed in the database, so any number of processes fire
each tick once)."""

from __future__ import annotations

import logging
from datetime import timedelta

from cadenza_runtime import Resources
from cadenza_runtime.periodic import Periodic
from cadenza_state import utcnow
from cadenza_triggers import PassReport, SpecCache, fire_due
from opentelemetry import trace

from . import metrics
from .settings import TriggerSettings

log = logging.getLogger("cadenza.scheduler")
tracer = trace.get_tracer("cadenza.trigger")


class Scheduler:
    def __init__(self, resources: Resources, settings: TriggerSettings) -> None:
        self._resources = resources
        self._settings = settings
        self._cache = SpecCache()
        self._periodic = Periodic(
            "scheduler", self.run_once, settings.schedule_poll_s, log=log, at_start=True
        )

    async def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> PassReport:
        with tracer.start_as_current_span("cadenza.scheduler.pass") as span:
            report = await fire_due(
                sessions=self._resources.sessions,
                registry=self._resources.registry,
                now=utcnow(),
                grace=timedelta(seconds=self._settings.schedule_grace_s),
                cache=self._cache,
                batch=self._settings.schedule_batch,
            )
            span.set_attribute("cadenza.schedule.fired", len(report.started))
        if report.started or report.cancelled:
            self._resources.relay.notify()
        metrics.TICKS.labels("fired").inc(len(report.started) - report.caught_up)
        metrics.TICKS.labels("caught_up").inc(report.caught_up)
        for reason, count in report.skipped.items():
            metrics.TICKS.labels(f"skipped_{reason}").inc(count)
        for run_id in report.cancelled:  # the orchestrator applies the cancel command
            log.info("schedule cancelled run %s (overlap policy)", run_id)
        for name, run_id in report.started:
            log.info("schedule %s started run %s", name, run_id)
        return report
