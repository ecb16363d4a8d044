"""Retention of the dedupe ledgers (``triggered_events``, ``schedule_fires``) on both
stacks: a pass deletes the rows older than its days, page by page, and keeps the rest; a
kept row still dedupes its event, a deleted one no longer does; off while the days are 0;
the loop survives a failing pass. The clock is passed in, so nothing waits for real days."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cadenza_runtime import Resources
from cadenza_state import ScheduleFireRecord, TriggeredEventRecord
from cadenza_trigger import ledger_retention
from cadenza_trigger.ledger_retention import LedgerRetention
from cadenza_trigger.settings import TriggerSettings
from cadenza_triggers import CloudEvent, SpecCache, Trigger, TriggerSpec, start_for_event
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import select
from support import assert_eventually
from support.ledgers import add_ledger_rows
from trigger_support import add_workflow

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
RECENT = NOW - timedelta(days=2)


def settings(**fields: Any) -> TriggerSettings:
    return TriggerSettings(ledger_retention_days=30, ledger_retention_batch_size=2, **fields)


def deleted(ledger: str) -> float:
    value = REGISTRY.get_sample_value(
        "cadenza_trigger_ledger_rows_deleted_total", {"ledger": ledger}
    )
    return value or 0.0


def passes(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "cadenza_trigger_ledger_retention_passes_total", {"outcome": outcome}
    )
    return value or 0.0


async def add_ledgers(resources: Resources, old: int, recent: int, now: datetime = NOW) -> str:
    """``old`` + ``recent`` rows in each ledger, recorded (due) 40 and 2 days before ``now``."""
    ages = [timedelta(days=40)] * old + [timedelta(days=2)] * recent
    return await add_ledger_rows(resources.sessions, ages, now)


async def ledger_keys(resources: Resources) -> tuple[list[str], list[datetime]]:
    async with resources.sessions() as session:
        keys = await session.scalars(
            select(TriggeredEventRecord.dedupe_key).order_by(TriggeredEventRecord.id)
        )
        ticks = await session.scalars(
            select(ScheduleFireRecord.fire_time).order_by(ScheduleFireRecord.fire_time)
        )
        return list(keys), [t.astimezone(UTC) for t in ticks]


async def test_a_pass_deletes_old_rows_page_by_page_and_keeps_recent_ones(
    resources: Resources,
) -> None:
    await add_ledgers(resources, old=5, recent=2)
    before = deleted("triggered_events"), deleted("schedule_fires")

    pruned = await LedgerRetention(resources, settings()).prune_once(NOW)

    # 5 old rows in pages of 2: the drain must go past the first full pages.
    assert (pruned.triggered_events, pruned.schedule_fires) == (5, 5)
    keys, ticks = await ledger_keys(resources)
    assert keys == ["k5", "k6"]
    assert ticks == [RECENT + timedelta(seconds=5), RECENT + timedelta(seconds=6)]
    assert deleted("triggered_events") - before[0] == 5
    assert deleted("schedule_fires") - before[1] == 5
    # A second pass finds nothing more.
    again = await LedgerRetention(resources, settings()).prune_once(NOW)
    assert (again.triggered_events, again.schedule_fires) == (0, 0)


async def test_passes_of_several_trigger_processes_at_once_delete_each_row_once(
    resources: Resources,
) -> None:
    await add_ledgers(resources, old=9, recent=1)
    passes_ = [LedgerRetention(resources, settings()) for _ in range(3)]
    results = await asyncio.gather(*(p.prune_once(NOW) for p in passes_))
    assert sum(r.triggered_events for r in results) == 9
    assert sum(r.schedule_fires for r in results) == 9
    keys, ticks = await ledger_keys(resources)
    assert (keys, len(ticks)) == (["k9"], 1)


async def test_the_cutoff_is_the_days_before_now(resources: Resources) -> None:
    await add_ledgers(resources, old=1, recent=1)
    retention = LedgerRetention(resources, settings())
    # 40 days old is kept by a pass 10 days earlier (30 days old then).
    pruned = await retention.prune_once(NOW - timedelta(days=10, seconds=1))
    assert (pruned.triggered_events, pruned.schedule_fires) == (0, 0)
    pruned = await retention.prune_once(NOW)
    assert (pruned.triggered_events, pruned.schedule_fires) == (1, 1)


async def test_zero_days_keeps_every_row_and_starts_no_loop(resources: Resources) -> None:
    await add_ledgers(resources, old=3, recent=0)
    retention = LedgerRetention(resources, TriggerSettings())
    assert TriggerSettings().ledger_retention_days == 0
    pruned = await retention.prune_once(NOW + timedelta(days=3650))
    assert (pruned.triggered_events, pruned.schedule_fires) == (0, 0)
    await retention.start()
    assert not retention.running
    keys, ticks = await ledger_keys(resources)
    assert len(keys) == len(ticks) == 3


async def test_a_kept_row_dedupes_its_event_and_a_deleted_one_no_longer_does(
    resources: Resources,
) -> None:
    """What the days trade: once its row is gone, a replayed event starts a second run."""
    await add_workflow(resources)
    trigger = Trigger(
        "default",
        "t",
        1,
        TriggerSpec.model_validate(
            {"name": "t", "topics": ["up"], "workflow": "echo", "inputs": {"n": 1}}
        ),
    )
    event = CloudEvent.model_validate(
        {"id": "e1", "source": "/s", "type": "pay", "mode": "binary", "data": {}}
    )

    async def start() -> Any:
        return await start_for_event(
            sessions=resources.sessions,
            registry=resources.registry,
            trigger=trigger,
            event=event,
            cache=SpecCache(),
            actor="test",
        )

    first = await start()
    assert not first.duplicate
    retention = LedgerRetention(resources, settings())
    real_now = datetime.now(UTC)

    await retention.prune_once(real_now + timedelta(days=29))  # the row is 29 days old: kept
    replay = await start()
    assert replay.duplicate
    assert replay.run_id == first.run_id

    await retention.prune_once(real_now + timedelta(days=31))  # 31 days old: deleted
    late = await start()
    assert not late.duplicate
    assert late.run_id != first.run_id


async def test_the_loop_counts_a_failed_pass_and_goes_on(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_ledgers(resources, old=3, recent=1, now=datetime.now(UTC))  # the loop's clock
    real = ledger_retention.prune_ledgers
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database said no")
        return await real(*args, **kwargs)

    monkeypatch.setattr(ledger_retention, "prune_ledgers", flaky)
    errors, oks = passes("error"), passes("ok")
    retention = LedgerRetention(resources, settings(ledger_retention_interval_s=0.05))
    await retention.start()
    try:

        async def done() -> bool:
            keys, _ = await ledger_keys(resources)
            return len(keys) == 1

        await assert_eventually(done, timeout=10)
        await assert_eventually(lambda: passes("ok") > oks, timeout=5)
    finally:
        await retention.stop()
    assert passes("error") - errors == 1
    gauge = REGISTRY.get_sample_value(
        "cadenza_trigger_ledger_retention_last_success_timestamp_seconds"
    )
    assert gauge is not None
    assert gauge > 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ledger_retention_days", -1),
        ("ledger_retention_batch_size", 0),
        ("ledger_retention_batch_size", 10_001),
        ("ledger_retention_interval_s", 0),
    ],
)
def test_bad_settings_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        TriggerSettings(**{field: value})
