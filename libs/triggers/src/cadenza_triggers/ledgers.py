"""Retention of the dedupe ledgers: ``triggered_events`` (one row per event that started a
run) and ``schedule_fires`` (one row per schedule tick).

A ledger row is what makes an event or a tick start its run once, so deleting it reopens
the door: an event redelivered or replayed after its row is gone starts a second run. Keep
rows longer than anything can come back: the upstream topics' retention (a consumer group
reset to the earliest offset replays all of it) and any replay an operator may do. A tick
never comes back once the schedule's ``next_fire_at`` moved past it, so its rows are
history only.

Deleting is paged (``cadenza_state.delete_in_pages``: ``batch`` rows a transaction, oldest
first, rows another process is deleting skipped), so a pass holds no long lock and any
number of trigger processes may run it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cadenza_state import ScheduleFireRecord, TriggeredEventRecord, delete_in_pages
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["LedgerPruned", "count_ledger_rows", "prune_ledgers"]


@dataclass
class LedgerPruned:
    """Rows one pass deleted (or, from ``count_ledger_rows``, would delete), per ledger."""

    triggered_events: int = 0
    schedule_fires: int = 0


async def prune_ledgers(
    sessions: async_sessionmaker[AsyncSession], before: datetime, batch: int
) -> LedgerPruned:
    """Delete the ledger rows older than ``before``: events recorded, ticks due, before it."""
    events = TriggeredEventRecord
    fires = ScheduleFireRecord
    return LedgerPruned(
        triggered_events=await delete_in_pages(
            sessions, [events.id], [events.created_at < before], events.created_at, batch
        ),
        schedule_fires=await delete_in_pages(
            sessions,
            [fires.schedule_id, fires.fire_time],
            [fires.fire_time < before],
            fires.fire_time,
            batch,
        ),
    )


async def count_ledger_rows(
    sessions: async_sessionmaker[AsyncSession], before: datetime
) -> LedgerPruned:
    """How many rows ``prune_ledgers`` with the same ``before`` would delete: a preview."""
    async with sessions() as session:
        events = await session.scalar(
            select(func.count()).where(TriggeredEventRecord.created_at < before)
        )
        fires = await session.scalar(
            select(func.count()).where(ScheduleFireRecord.fire_time < before)
        )
    return LedgerPruned(triggered_events=int(events or 0), schedule_fires=int(fires or 0))
