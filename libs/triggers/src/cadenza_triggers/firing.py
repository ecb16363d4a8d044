"""Firing due schedules, exactly once per tick with any number of scheduler processes.

Each pass claims due schedules with ``SELECT … FOR UPDATE SKIP LOCKED`` (a schedule is
handled by one process at a time; the others skip it instead of waiting), and writes, in
ONE transaction per pass: each tick's ``schedule_fires`` row (outcome ``started``,
``caught_up`` — a missed tick fired by the catch-up policy —, ``skipped_overlap`` or
``failed``) (primary key (schedule, fire
time): a tick fires once even if a stale process got there), the run it starts (the shared
``cadenza_runtime.create_run``, outbox included) and the schedule's next fire time. A
crash before the commit leaves nothing behind; the next pass (of any process) fires the
tick again. No local timers: the database is the clock's memory.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cadenza_events import NonRetryableError, TopicRegistry
from cadenza_runtime import create_run
from cadenza_runtime.runs import request_cancel
from cadenza_state import (
    TERMINAL_RUN_STATUSES,
    RunRecord,
    ScheduleFireRecord,
    ScheduleRecord,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .schedules import Overlap, ScheduleSpec, due_ticks
from .starting import SpecCache, prepare_run

log = logging.getLogger("cadenza.scheduler")
SOURCE = "/cadenza/scheduler"
ACTOR = "scheduler"


@dataclass
class PassReport:
    """What one pass did (for metrics and tests)."""

    started: list[tuple[str, str]] = field(default_factory=list)
    """(schedule name, run id)"""
    caught_up: int = 0
    """How many of ``started`` were missed ticks fired by the catch-up policy."""
    skipped: dict[str, int] = field(default_factory=dict)
    """reason → ticks: missed (catch-up policy), overlap, failed (workflow or inputs)."""
    cancelled: list[str] = field(default_factory=list)
    """Runs cancelled by ``cancel_previous`` (the caller sends their stop markers)."""

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count


async def fire_due(
    *,
    sessions: async_sessionmaker[AsyncSession],
    registry: TopicRegistry,
    now: datetime,
    grace: timedelta,
    cache: SpecCache,
    batch: int = 50,
) -> PassReport:
    """Fire every due tick of up to ``batch`` schedules; see the module docstring."""
    report = PassReport()
    async with sessions() as session, session.begin():
        rows = (
            await session.scalars(
                select(ScheduleRecord)
                .where(
                    ScheduleRecord.paused.is_(False),
                    ScheduleRecord.next_fire_at.is_not(None),
                    ScheduleRecord.next_fire_at <= now,
                )
                .order_by(ScheduleRecord.next_fire_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            spec = ScheduleSpec.model_validate(row.spec)
            assert row.next_fire_at is not None
            ticks, missed, following = due_ticks(spec, row.next_fire_at, now, grace)
            report.skip("missed", missed)
            for tick in ticks:
                late = now - tick > grace  # fired by the catch-up policy
                await _fire(session, registry, row, spec, tick, cache, report, late)
            row.next_fire_at = following
    return report


async def _fire(
    session: AsyncSession,
    registry: TopicRegistry,
    row: ScheduleRecord,
    spec: ScheduleSpec,
    tick: datetime,
    cache: SpecCache,
    report: PassReport,
    late: bool,
) -> None:
    outcome, run_id = ("caught_up" if late else "started"), None
    previous = await _unfinished_previous(session, row)
    if previous is not None and spec.overlap is Overlap.SKIP:
        outcome = "skipped_overlap"
    else:
        try:
            prepared = await prepare_run(
                session=session,
                tenant_id=row.tenant_id,
                workflow=spec.workflow,
                inputs=spec.inputs,
                cache=cache,
                who=f"schedule {row.name!r}",
            )
        except NonRetryableError as exc:
            log.warning("schedule %s: tick %s not started: %s", row.name, tick.isoformat(), exc)
            outcome = "failed"
        else:
            run_id = str(uuid.uuid4())
    try:
        async with session.begin_nested():
            session.add(
                ScheduleFireRecord(
                    schedule_id=row.id, fire_time=tick, outcome=outcome, run_id=run_id
                )
            )
            await session.flush()
            if run_id is None:
                report.skip("overlap" if outcome == "skipped_overlap" else "failed")
                return
            if previous is not None and spec.overlap is Overlap.CANCEL_PREVIOUS:
                await request_cancel(
                    session=session,
                    registry=registry,
                    run=previous,
                    actor=ACTOR,
                    source=SOURCE,
                    reason=f"schedule {row.name}: overlap policy cancel_previous",
                )
                report.cancelled.append(previous.id)
            await create_run(
                session=session,
                registry=registry,
                tenant_id=row.tenant_id,
                workflow_name=prepared.workflow_name,
                workflow_version=prepared.workflow_version,
                spec=prepared.spec,
                inputs=prepared.inputs,
                idempotency_key=None,
                actor=ACTOR,
                source=SOURCE,
                started_by=_started_by(row, tick),
                run_id=run_id,
            )
    except IntegrityError:
        # The tick was fired already (a process that held a stale view): nothing to do.
        log.info("schedule %s: tick %s was already fired", row.name, tick.isoformat())
        return
    row.last_fire_at = tick
    row.last_run_id = run_id
    report.started.append((row.name, run_id))
    report.caught_up += late


async def _unfinished_previous(session: AsyncSession, row: ScheduleRecord) -> RunRecord | None:
    if row.last_run_id is None:
        return None
    run = await session.scalar(
        select(RunRecord)
        .where(RunRecord.id == row.last_run_id, RunRecord.tenant_id == row.tenant_id)
        .with_for_update()
    )
    if run is None or run.status in TERMINAL_RUN_STATUSES:
        return None
    return run


def _started_by(row: ScheduleRecord, tick: datetime) -> dict[str, Any]:
    return {
        "kind": "schedule",
        "schedule": row.name,
        "schedule_id": row.id,
        "fire_time": tick.isoformat().replace("+00:00", "Z"),
    }
