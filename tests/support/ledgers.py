"""Seeding the dedupe ledgers (``triggered_events``, ``schedule_fires``) for the tests of
their retention: the pass itself, its fault drill and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cadenza_state import ScheduleFireRecord, ScheduleRecord, TriggeredEventRecord
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def add_ledger_rows(
    sessions: async_sessionmaker[AsyncSession],
    ages: Sequence[timedelta],
    now: datetime,
    *,
    first: int = 0,
    tenant: str = "default",
) -> str:
    """One row in each ledger per age: an event recorded (a tick due) ``age`` before
    ``now``, plus ``n`` seconds so they sort in order; dedupe keys ``k{n}`` and run ids
    ``r{n}`` from ``first`` on. The ticks belong to a new schedule, whose id is returned."""
    async with sessions() as session, session.begin():
        schedule = ScheduleRecord(tenant_id=tenant, name=f"tick-{first}", spec={}, paused=False)
        session.add(schedule)
        await session.flush()
        for n, age in enumerate(ages, start=first):
            at = now - age + timedelta(seconds=n)
            session.add(
                TriggeredEventRecord(
                    tenant_id=tenant,
                    trigger_name="t",
                    dedupe_key=f"k{n}",
                    run_id=f"r{n}",
                    created_at=at,
                )
            )
            session.add(
                ScheduleFireRecord(
                    schedule_id=schedule.id, fire_time=at, outcome="started", run_id=f"r{n}"
                )
            )
        return schedule.id
