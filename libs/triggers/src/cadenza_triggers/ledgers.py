"""Retention of the dedupe ledgers: ``triggered_events`` (one row per event that started a
run) and ``schedule_fires`` (one row per schedule tick).

A ledger row is what makes an event or a tick start its run once, so deleting it reopens
the door: an event redelivered or replayed after its row is gone starts a second run. Keep
rows longer than anything can come back: the upstream topics' retention (a consumer group
reset to the earliest offset replays all of it) and any replay an operator may do. A tick
never comes back once the schedule's ``next_fire_at`` moved past it, so its rows are
history only.

Deleting is paged (``batch`` rows a transaction, oldest first, rows another process is
deleting skipped), so a pass holds no long lock and any number of trigger processes may
run it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cadenza_state import ScheduleFireRecord, TriggeredEventRecord
from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Delete

__all__ = ["LedgerPruned", "prune_ledgers"]


@dataclass
class LedgerPruned:
    """Rows one pass deleted, per ledger."""

    triggered_events: int = 0
    schedule_fires: int = 0


def _events_page(before: datetime, batch: int) -> Delete:
    page = (
        select(TriggeredEventRecord.id)
        .where(TriggeredEventRecord.created_at < before)
        .order_by(TriggeredEventRecord.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return delete(TriggeredEventRecord).where(TriggeredEventRecord.id.in_(page))


def _fires_page(before: datetime, batch: int) -> Delete:
    page = (
        select(ScheduleFireRecord.schedule_id, ScheduleFireRecord.fire_time)
        .where(ScheduleFireRecord.fire_time < before)
        .order_by(ScheduleFireRecord.fire_time)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    return delete(ScheduleFireRecord).where(
        tuple_(ScheduleFireRecord.schedule_id, ScheduleFireRecord.fire_time).in_(page)
    )


async def _drain(sessions: async_sessionmaker[AsyncSession], statement: Delete, batch: int) -> int:
    """Run one page's delete until a page deletes fewer than ``batch`` rows."""
    total = 0
    while True:
        async with sessions() as session, session.begin():
            deleted = int((await session.execute(statement)).rowcount or 0)  # type: ignore[attr-defined]
        total += deleted
        if deleted < batch:
            return total


async def prune_ledgers(
    sessions: async_sessionmaker[AsyncSession], before: datetime, batch: int
) -> LedgerPruned:
    """Delete the ledger rows older than ``before``: events recorded, ticks due, before it."""
    return LedgerPruned(
        triggered_events=await _drain(sessions, _events_page(before, batch), batch),
        schedule_fires=await _drain(sessions, _fires_page(before, batch), batch),
    )
