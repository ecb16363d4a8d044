"""The outbox relay on PostgreSQL and SQLite: a writer's own rows are sent at once and
deleted later in batches; relays leave them alone for the grace and take over what a dead
writer left; a failed send goes to the relay at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from cadenza_events import Publisher, RawRecord
from cadenza_runtime.relay import OutboxRelay
from cadenza_state import OutboxMessage, StagedMessage, delete_published, insert_outbox
from prometheus_client import REGISTRY
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import assert_eventually

Sessions = async_sessionmaker[AsyncSession]


class RecordingPublisher:
    """Records what the relay sends; ``failures`` sends fail first (the bus is down)."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[RawRecord] = []
        self.sends: list[list[str]] = []
        """Each send's keys: one produce request each."""
        self.failures = failures

    async def publish_raw_many(
        self, items: list[RawRecord], *, appended: Callable[[], None] | None = None
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the bus is down")
        self.sent.extend(items)
        self.sends.append([key.decode() for _, key, _, _ in items if key is not None])

    def keys(self) -> list[str]:
        return [key.decode() for _, key, _, _ in self.sent if key is not None]


def relay(sessions: Sessions, publisher: RecordingPublisher, **options: Any) -> OutboxRelay:
    return OutboxRelay(sessions, cast(Publisher, publisher), **options)


async def stage(
    sessions: Sessions, keys: list[str], publisher: str | None, topic: str = "t.task.ready"
) -> list[StagedMessage]:
    rows = [(topic, key, [("ce_id", key.encode())], key.encode()) for key in keys]
    async with sessions() as session, session.begin():
        return await insert_outbox(session, rows, publisher=publisher)


async def left(sessions: Sessions) -> set[str]:
    """The keys of the rows still in the outbox (a published row is deleted)."""
    async with sessions() as session:
        return {str(key) for key in (await session.scalars(select(OutboxMessage.key))).all()}


async def test_a_writer_sends_its_rows_at_once_and_deletes_them_in_the_background(
    sessions: Sessions,
) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus, delete_interval_s=0.05)
    await outbox.start()
    try:
        rows = await stage(sessions, ["a", "b"], outbox.publisher_id)
        await stage(sessions, ["not-yet-sent"], outbox.publisher_id)
        assert await outbox.publish_committed(rows) == 2
        assert bus.keys() == ["a", "b"]  # sent before any database round trip

        async def deleted() -> bool:
            return await left(sessions) == {"not-yet-sent"}

        await assert_eventually(deleted, timeout=10, message="the sent rows were never deleted")
        assert await outbox.relay_once() == 0  # the unsent row is its writer's: no duplicate
    finally:
        await outbox.stop()
    assert bus.keys() == ["a", "b"]


async def test_a_relay_leaves_a_live_writers_rows_alone_and_takes_a_dead_writers(
    sessions: Sessions,
) -> None:
    bus = RecordingPublisher()
    await stage(sessions, ["sent-by-its-writer"], "orchestrator-elsewhere")
    patient = relay(sessions, bus, direct_grace_s=60)
    assert await patient.relay_once() == 0  # its writer is sending it
    late = relay(sessions, bus, direct_grace_s=0)  # the grace is over: its writer died
    assert await late.relay_once() == 1
    assert bus.keys() == ["sent-by-its-writer"]
    assert await left(sessions) == set()


async def test_a_failed_send_hands_the_rows_to_the_relay_at_once(sessions: Sessions) -> None:
    bus = RecordingPublisher(failures=1)
    outbox = relay(sessions, bus, direct_grace_s=3600)
    rows = await stage(sessions, ["x", "y"], outbox.publisher_id)
    assert await outbox.publish_committed(rows) == 0
    assert bus.sent == []
    # Released: a relay pass sends them now, not in an hour.
    assert await outbox.relay_once() == 2
    assert bus.keys() == ["x", "y"]
    assert await left(sessions) == set()


async def test_a_graceful_stop_deletes_what_was_sent(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus, delete_interval_s=3600)  # no delete before the stop
    await outbox.start()
    rows = await stage(sessions, ["s"], outbox.publisher_id)
    await outbox.publish_committed(rows)
    assert await left(sessions) == {"s"}
    await outbox.stop()
    assert await left(sessions) == set()
    assert bus.keys() == ["s"]


TIMELINE = "t.run.events"


async def test_lingering_rows_of_several_commits_leave_in_one_send_in_order(
    sessions: Sessions,
) -> None:
    """The timeline's rows wait for the next commits' and go out together; a task.ready of
    the same commits goes at once, alone; all are deleted after."""
    bus = RecordingPublisher()
    outbox = relay(sessions, bus, delete_interval_s=0.05)
    outbox.linger([TIMELINE], 0.2)
    await outbox.start()
    try:
        for step in range(3):
            events = await stage(sessions, [f"events-{step}"], outbox.publisher_id, TIMELINE)
            ready = await stage(sessions, [f"ready-{step}"], outbox.publisher_id)
            assert await outbox.publish_committed([*events, *ready]) == 2
            assert bus.sends[-1] == [f"ready-{step}"]  # not held back by the timeline's
        assert len(bus.sends) == 3  # the timeline still lingers

        def one_send() -> bool:
            return bus.sends[-1] == ["events-0", "events-1", "events-2"]

        await assert_eventually(one_send, timeout=10, message="the timeline was never sent")
        assert len(bus.sends) == 4

        async def deleted() -> bool:
            return await left(sessions) == set()

        await assert_eventually(deleted, timeout=10, message="the sent rows were never deleted")
    finally:
        await outbox.stop()


async def test_a_failed_lingering_send_hands_its_rows_to_the_relay(sessions: Sessions) -> None:
    bus = RecordingPublisher(failures=1)
    outbox = relay(sessions, bus, direct_grace_s=3600)
    outbox.linger([TIMELINE], 0.01)
    rows = await stage(sessions, ["e1", "e2"], outbox.publisher_id, TIMELINE)
    assert await outbox.publish_committed(rows) == 2  # queued

    async def released() -> bool:
        return await outbox.relay_once() == 2  # not in an hour: now

    await assert_eventually(released, timeout=10, message="the rows never reached the relay")
    assert bus.keys() == ["e1", "e2"]
    assert await left(sessions) == set()


async def test_a_graceful_stop_sends_the_lingering_rows(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus, delete_interval_s=3600, direct_grace_s=3600)
    outbox.linger([TIMELINE], 3600)  # only the stop sends them
    await outbox.start()
    rows = await stage(sessions, ["last"], outbox.publisher_id, TIMELINE)
    await outbox.publish_committed(rows)
    assert bus.sent == []
    async with asyncio.timeout(3):  # at once, not after the stop's grace
        await outbox.stop()
    assert bus.keys() == ["last"]
    assert await left(sessions) == set()


async def test_a_linger_of_zero_sends_every_row_at_once(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus)
    outbox.linger([TIMELINE], 0)
    rows = await stage(sessions, ["e"], outbox.publisher_id, TIMELINE)
    assert await outbox.publish_committed(rows) == 1
    assert bus.sends == [["e"]]


def delete_passes(outcome: str) -> float:
    value = REGISTRY.get_sample_value("cadenza_outbox_delete_passes_total", {"outcome": outcome})
    return value or 0.0


async def test_a_failed_delete_pass_keeps_the_rows_for_the_next(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database away for one pass: the sent rows stay queued, the failure is counted,
    and the next pass deletes them (the deleter goes on)."""
    import cadenza_runtime.relay as relay_module

    real = relay_module.delete_published
    failures = [1]

    async def away_once(session: AsyncSession, ids: Any) -> int:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionRefusedError("the database is down")
        return await real(session, ids)

    monkeypatch.setattr(relay_module, "delete_published", away_once)
    errors, oks = delete_passes("error"), delete_passes("ok")
    outbox = relay(sessions, RecordingPublisher(), delete_interval_s=0.05)
    await outbox.start()
    try:
        rows = await stage(sessions, ["k"], outbox.publisher_id)
        assert await outbox.publish_committed(rows) == 1

        async def deleted() -> bool:
            return await left(sessions) == set()

        await assert_eventually(deleted, timeout=10, message="the sent row was never deleted")
    finally:
        await outbox.stop()
    assert failures == [0]
    assert delete_passes("error") == errors + 1
    assert delete_passes("ok") > oks


async def test_without_a_running_relay_the_writer_deletes_at_once(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus)  # never started: tools and one-off scripts
    rows = await stage(sessions, ["now"], outbox.publisher_id)
    assert await outbox.publish_committed(rows) == 1
    assert await left(sessions) == set()


async def test_the_deletes_of_many_sends_are_one_statement(sessions: Sessions) -> None:
    first = await stage(sessions, ["a", "b"], "w")
    second = await stage(sessions, ["c"], "w")
    await stage(sessions, ["unsent"], "w")
    async with sessions() as session, session.begin():
        assert await delete_published(session, [first[0].id]) == 1
    statements: list[str] = []
    async with sessions() as session, session.begin():
        engine = session.get_bind()

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            # "a" was deleted before: it is not counted.
            assert await delete_published(session, [r.id for r in first + second]) == 2
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert [s for s in statements if s.startswith("DELETE")] == statements[-1:]  # one
    assert await left(sessions) == {"unsent"}


async def test_the_backlog_age_is_the_oldest_unpublished_rows_wait(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus)
    assert await outbox.backlog_age() == 0.0  # nothing to publish
    await stage(sessions, ["waiting"], None)
    await stage(sessions, ["newer"], None)
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.key == "waiting")
            .values(created_at=datetime.now(UTC) - timedelta(seconds=30))
        )
    assert 29 < await outbox.backlog_age() < 60  # the oldest row's wait, not the newest's
    assert await outbox.relay_once() == 2
    assert await outbox.backlog_age() == 0.0


async def test_a_running_relay_reports_the_backlog_while_the_bus_is_down(
    sessions: Sessions,
) -> None:
    bus = RecordingPublisher(failures=1_000)  # Kafka down for the whole test
    outbox = relay(sessions, bus, poll_interval_s=0.05)
    await stage(sessions, ["stuck"], None)
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage).values(created_at=datetime.now(UTC) - timedelta(seconds=90))
        )
    await outbox.start()
    try:

        def reported() -> bool:
            return (
                REGISTRY.get_sample_value("cadenza_outbox_oldest_unpublished_seconds") or 0
            ) > 89

        await assert_eventually(reported, timeout=10, message="the backlog was never reported")
    finally:
        await outbox.stop(grace_s=0.5)
    assert bus.sent == []
