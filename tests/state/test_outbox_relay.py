"""The outbox relay on PostgreSQL and SQLite: a writer's own rows are sent at once and
marked later in batches; relays leave them alone for the grace and take over what a dead
writer left; a failed send goes to the relay at once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from cadenza_events import Publisher, RawRecord
from cadenza_runtime.relay import OutboxRelay
from cadenza_state import OutboxMessage, StagedMessage, insert_outbox, mark_published_many
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import assert_eventually

Sessions = async_sessionmaker[AsyncSession]


class RecordingPublisher:
    """Records what the relay sends; ``failures`` sends fail first (the bus is down)."""

    def __init__(self, failures: int = 0) -> None:
        self.sent: list[RawRecord] = []
        self.failures = failures

    async def publish_raw_many(self, items: list[RawRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the bus is down")
        self.sent.extend(items)

    def keys(self) -> list[str]:
        return [key.decode() for _, key, _, _ in self.sent if key is not None]


def relay(sessions: Sessions, publisher: RecordingPublisher, **options: Any) -> OutboxRelay:
    return OutboxRelay(sessions, cast(Publisher, publisher), **options)


async def stage(sessions: Sessions, keys: list[str], publisher: str | None) -> list[StagedMessage]:
    rows = [("t.task.ready", key, [("ce_id", key.encode())], key.encode()) for key in keys]
    async with sessions() as session, session.begin():
        return await insert_outbox(session, rows, publisher=publisher)


async def published_at(sessions: Sessions) -> dict[str, datetime | None]:
    async with sessions() as session:
        rows = await session.execute(select(OutboxMessage.key, OutboxMessage.published_at))
        return {str(key): at for key, at in rows.all()}


async def test_a_writer_sends_its_rows_at_once_and_marks_them_in_the_background(
    sessions: Sessions,
) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus, mark_interval_s=0.05)
    await outbox.start()
    try:
        rows = await stage(sessions, ["a", "b"], outbox.publisher_id)
        before = datetime.now(UTC)
        assert await outbox.publish_committed(rows) == 2
        assert bus.keys() == ["a", "b"]  # sent before any database round trip

        async def marked() -> bool:
            return all(at is not None for at in (await published_at(sessions)).values())

        await assert_eventually(marked, timeout=10, message="the sent rows were never marked")
        stamps = await published_at(sessions)
        # Each row keeps the time it was sent, not the time of the mark.
        assert all(before <= cast(datetime, at).replace(tzinfo=UTC) for at in stamps.values())
        assert await outbox.relay_once() == 0  # nothing left: no duplicate
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
    assert (await published_at(sessions))["sent-by-its-writer"] is not None


async def test_a_failed_send_hands_the_rows_to_the_relay_at_once(sessions: Sessions) -> None:
    bus = RecordingPublisher(failures=1)
    outbox = relay(sessions, bus, direct_grace_s=3600)
    rows = await stage(sessions, ["x", "y"], outbox.publisher_id)
    assert await outbox.publish_committed(rows) == 0
    assert bus.sent == []
    # Released: a relay pass sends them now, not in an hour.
    assert await outbox.relay_once() == 2
    assert bus.keys() == ["x", "y"]
    assert all(at is not None for at in (await published_at(sessions)).values())


async def test_a_graceful_stop_marks_what_was_sent(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus, mark_interval_s=3600)  # no mark before the stop
    await outbox.start()
    rows = await stage(sessions, ["s"], outbox.publisher_id)
    await outbox.publish_committed(rows)
    assert (await published_at(sessions))["s"] is None
    await outbox.stop()
    assert (await published_at(sessions))["s"] is not None
    assert bus.keys() == ["s"]


async def test_without_a_running_relay_the_writer_marks_at_once(sessions: Sessions) -> None:
    bus = RecordingPublisher()
    outbox = relay(sessions, bus)  # never started: tools and one-off scripts
    rows = await stage(sessions, ["now"], outbox.publisher_id)
    assert await outbox.publish_committed(rows) == 1
    assert (await published_at(sessions))["now"] is not None


async def test_the_marks_of_many_sends_are_one_statement_each_row_keeping_its_time(
    sessions: Sessions,
) -> None:
    early, late = datetime(2026, 12, 4, 10, 0, tzinfo=UTC), datetime(2026, 12, 4, 10, 5, tzinfo=UTC)
    first = await stage(sessions, ["a", "b"], "w")
    second = await stage(sessions, ["c"], "w")
    async with sessions() as session, session.begin():
        assert await mark_published_many(session, [([first[0].id], early)]) == 1
    statements: list[str] = []
    async with sessions() as session, session.begin():
        engine = session.get_bind()

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            marks = [([r.id for r in first], late), ([second[0].id], early)]
            # "a" was marked before: it keeps its time and is not counted.
            assert await mark_published_many(session, marks) == 2
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert [s for s in statements if s.startswith("UPDATE")] == statements[-1:]  # one
    stamps = {
        k: cast(datetime, at).replace(tzinfo=UTC)
        for k, at in (await published_at(sessions)).items()
    }
    assert stamps == {"a": early, "b": late, "c": early}
