"""Firing schedules against the database (both stacks): one run per tick, however many
passes race; overlap and catch-up policies; pause. The clock is passed in, so no test
waits for real time (the e2e test runs real schedulers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cadenza_events import Message, RunCancelRequested, Topic, decode
from cadenza_runtime import Resources
from cadenza_state import OutboxMessage, RunRecord, RunStatus, ScheduleFireRecord, ScheduleRecord
from cadenza_triggers import ScheduleSpec, SpecCache, fire_due, next_fire
from sqlalchemy import select, update
from support.stacks import hold_relay
from trigger_support import add_workflow

T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=2)


async def add_schedule(resources: Resources, **fields: Any) -> str:
    spec = ScheduleSpec.model_validate(
        {"name": "tick", "cron": "* * * * * *", "workflow": "echo", "inputs": {"n": 1}, **fields}
    )
    async with resources.sessions() as session, session.begin():
        row = ScheduleRecord(
            tenant_id="default",
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            paused=False,
            next_fire_at=next_fire(spec, T0 - timedelta(microseconds=1)),
        )
        session.add(row)
        await session.flush()
        return row.id


async def fire(resources: Resources, now: datetime) -> int:
    report = await fire_due(
        sessions=resources.sessions,
        registry=resources.registry,
        now=now,
        grace=GRACE,
        cache=SpecCache(),
    )
    return len(report.started)


async def runs(resources: Resources) -> list[RunRecord]:
    async with resources.sessions() as session:
        return list((await session.scalars(select(RunRecord).order_by(RunRecord.created_at))).all())


async def fire_times(resources: Resources) -> list[tuple[datetime, str]]:
    async with resources.sessions() as session:
        rows = await session.scalars(
            select(ScheduleFireRecord).order_by(ScheduleFireRecord.fire_time)
        )
        return [(r.fire_time, r.outcome) for r in rows]


async def cancel_commands(resources: Resources) -> list[str]:
    """Runs whose ``run.cancel_requested`` command is staged in the outbox."""
    async with resources.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.topic == resources.registry.name(Topic.PLAN_REQUESTED)
                )
            )
        ).all()
    payloads = [
        decode(
            Message(
                r.topic,
                0,
                0,
                r.key.encode() if r.key else None,
                r.payload,
                tuple(r.kafka_headers()),
            )
        ).payload
        for r in rows
    ]
    return [p.run_id for p in payloads if isinstance(p, RunCancelRequested)]


async def finish_all(resources: Resources) -> None:
    async with resources.sessions() as session, session.begin():
        await session.execute(update(RunRecord).values(status=RunStatus.SUCCEEDED.value))


async def test_one_run_per_tick_however_many_passes_race(resources: Resources, stack: str) -> None:
    await add_workflow(resources)
    await add_schedule(resources, overlap="allow")
    for second in range(5):
        now = T0 + timedelta(seconds=second, milliseconds=300)
        # Racing passes (PostgreSQL: SKIP LOCKED; SQLite serializes them).
        if stack == "integration":
            await asyncio.gather(*(fire(resources, now) for _ in range(3)))
        else:
            for _ in range(3):
                await fire(resources, now)
    fired = await fire_times(resources)
    assert fired == [(T0 + timedelta(seconds=s), "started") for s in range(5)]
    started = await runs(resources)
    assert len(started) == 5
    assert sorted(r.started_by["fire_time"] for r in started if r.started_by) == [
        (T0 + timedelta(seconds=s)).isoformat().replace("+00:00", "Z") for s in range(5)
    ]
    assert all(r.inputs == {"n": 1} and r.workflow_version == 1 for r in started)


async def test_overlap_skip_and_cancel_previous(
    resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_relay(resources, monkeypatch)  # the cancel command stays staged, to be read
    await add_workflow(resources)
    await add_schedule(resources, overlap="skip")
    await add_schedule(resources, name="cancel", overlap="cancel_previous")
    assert await fire(resources, T0 + timedelta(milliseconds=100)) == 2
    first = {r.started_by["schedule"]: r.id for r in await runs(resources) if r.started_by}
    # The first runs are still pending: "skip" skips; "cancel_previous" asks the
    # orchestrator (the one writer of run state) to cancel the previous run, and starts one.
    assert await fire(resources, T0 + timedelta(seconds=1, milliseconds=100)) == 1
    assert [r.status for r in await runs(resources)] == ["pending"] * 3
    assert await cancel_commands(resources) == [first["cancel"]]
    assert "skipped_overlap" in {o for _, o in await fire_times(resources)}
    await finish_all(resources)
    assert await fire(resources, T0 + timedelta(seconds=2, milliseconds=100)) == 2


async def test_paused_schedules_do_not_fire_and_resume_with_their_catch_up_policy(
    resources: Resources,
) -> None:
    await add_workflow(resources)
    schedule_id = await add_schedule(resources, overlap="allow", catch_up="all", catch_up_max=3)
    assert await fire(resources, T0 + timedelta(milliseconds=100)) == 1
    async with resources.sessions() as session, session.begin():
        await session.execute(
            update(ScheduleRecord).where(ScheduleRecord.id == schedule_id).values(paused=True)
        )
    assert await fire(resources, T0 + timedelta(seconds=5)) == 0
    async with resources.sessions() as session, session.begin():
        await session.execute(
            update(ScheduleRecord).where(ScheduleRecord.id == schedule_id).values(paused=False)
        )
    # Resumed at +10.1 s: ticks 1…10 are due; 9 and 10 are within grace, 3 missed are
    # caught up (catch_up_max), the other missed ones skipped.
    assert await fire(resources, T0 + timedelta(seconds=10, milliseconds=100)) == 5
    fired = await fire_times(resources)
    assert fired == [
        (T0, "started"),
        *[(T0 + timedelta(seconds=s), "caught_up") for s in (6, 7, 8)],
        (T0 + timedelta(seconds=9), "started"),
        (T0 + timedelta(seconds=10), "started"),
    ]


async def test_a_tick_whose_run_is_refused_is_recorded_and_the_schedule_goes_on(
    resources: Resources,
) -> None:
    await add_workflow(resources)
    await add_schedule(resources, overlap="allow", inputs={"n": "not a number"})
    assert await fire(resources, T0 + timedelta(milliseconds=100)) == 0
    assert await fire_times(resources) == [(T0, "failed")]
    assert await fire(resources, T0 + timedelta(seconds=1, milliseconds=100)) == 0
    assert len(await fire_times(resources)) == 2
    assert await runs(resources) == []
