"""Outbox conformance on PostgreSQL and SQLite: atomic with the caller, claim/delete, no
double claims."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cadenza_state import (
    OutboxMessage,
    add_to_outbox,
    claim_unpublished,
    delete_published,
    insert_outbox,
    purge_published,
    release_to_relay,
)
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessions = async_sessionmaker[AsyncSession]


async def _enqueue(sessions: Sessions, n: int, topic: str = "task.ready") -> list[int]:
    async with sessions() as session, session.begin():
        msgs = [
            await add_to_outbox(
                session,
                topic=topic,
                key=f"k{i}",
                headers=[("ce_id", f"id-{i}"), ("traceparent", b"00-abc-def-01")],
                payload=f"payload-{i}".encode(),
            )
            for i in range(n)
        ]
        return [m.id for m in msgs]


async def test_claim_returns_oldest_first_up_to_limit(sessions: Sessions) -> None:
    ids = await _enqueue(sessions, 5)
    async with sessions() as session, session.begin():
        claimed = await claim_unpublished(session, limit=3)
    assert [m.id for m in claimed] == ids[:3]
    first = claimed[0]
    assert (first.topic, first.key, first.payload) == ("task.ready", "k0", b"payload-0")
    assert first.kafka_headers() == [("ce_id", b"id-0"), ("traceparent", b"00-abc-def-01")]


async def test_published_rows_are_deleted_and_not_claimed_again(sessions: Sessions) -> None:
    ids = await _enqueue(sessions, 4)
    async with sessions() as session, session.begin():
        claimed = await claim_unpublished(session, limit=2)
        assert await delete_published(session, [m.id for m in claimed]) == 2
    async with sessions() as session, session.begin():
        assert await delete_published(session, ids[:2]) == 0  # already gone
        assert await delete_published(session, []) == 0
        rest = await claim_unpublished(session, limit=10)
    assert [m.id for m in rest] == ids[2:]
    async with sessions() as session:
        left = (await session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id))).all()
    assert left == ids[2:]  # the table holds only what is still to publish


async def test_outbox_rows_roll_back_with_the_callers_transaction(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await add_to_outbox(session, topic="t", key=None, payload=b"x")
        await session.rollback()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_concurrent_claimers_get_disjoint_rows(sessions: Sessions) -> None:
    ids = await _enqueue(sessions, 6)
    async with sessions() as first, sessions() as second:
        await first.begin()
        got_first = await claim_unpublished(first, limit=3)

        async def claim_second() -> list[OutboxMessage]:
            async with second.begin():
                return await claim_unpublished(second, limit=6)

        if first.get_bind().dialect.name == "postgresql":
            # SKIP LOCKED: the second relay proceeds at once, past the locked rows.
            got_second = await claim_second()
            await delete_published(first, [m.id for m in got_first])
            await first.commit()
        else:
            # SQLite: BEGIN IMMEDIATE makes the second claimer wait for the first commit.
            pending = asyncio.create_task(claim_second())
            await delete_published(first, [m.id for m in got_first])
            await first.commit()
            got_second = await pending
    first_ids = {m.id for m in got_first}
    second_ids = {m.id for m in got_second}
    assert first_ids == set(ids[:3])
    assert second_ids == set(ids[3:])


async def _enqueue_direct(sessions: Sessions, n: int, publisher: str | None) -> list[int]:
    async with sessions() as session, session.begin():
        rows = [("task.ready", f"d{i}", [("ce_id", f"d-{i}".encode())], b"x") for i in range(n)]
        return [m.id for m in await insert_outbox(session, rows, publisher=publisher)]


async def test_relays_leave_rows_their_writer_publishes_alone_until_the_grace_is_over(
    sessions: Sessions,
) -> None:
    relayed = await _enqueue_direct(sessions, 2, None)
    direct = await _enqueue_direct(sessions, 2, "orchestrator-1")
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        fresh = await claim_unpublished(
            session, limit=10, direct_before=now - timedelta(seconds=10)
        )
        assert [m.id for m in fresh] == relayed  # the writer is sending the others
    async with sessions() as session, session.begin():
        late = await claim_unpublished(session, limit=10, direct_before=now + timedelta(seconds=1))
        assert [m.id for m in late] == relayed + direct  # past the grace: its writer died
    async with sessions() as session, session.begin():
        assert [m.id for m in await claim_unpublished(session, limit=10)] == relayed + direct


async def test_rows_released_to_the_relay_are_claimed_at_once(sessions: Sessions) -> None:
    direct = await _enqueue_direct(sessions, 3, "orchestrator-1")
    async with sessions() as session, session.begin():
        await delete_published(session, direct[:1])
        assert await release_to_relay(session, direct) == 2  # the published one is gone
        assert await release_to_relay(session, []) == 0
    async with sessions() as session, session.begin():
        cutoff = datetime.now(UTC) - timedelta(hours=1)
        claimed = await claim_unpublished(session, limit=10, direct_before=cutoff)
    assert [m.id for m in claimed] == direct[1:]
    assert {m.publisher for m in claimed} == {None}


@pytest.mark.parametrize(
    "db_settings", [pytest.param("postgres", marks=pytest.mark.integration)], indirect=True
)
async def test_rows_of_a_crashed_relay_are_claimed_again(sessions: Sessions) -> None:
    ids = await _enqueue(sessions, 2)
    async with sessions() as relay:
        await relay.begin()
        assert [m.id for m in await claim_unpublished(relay)] == ids
        await relay.rollback()  # e.g. Kafka down, or the relay died before commit
    async with sessions() as session, session.begin():
        assert [m.id for m in await claim_unpublished(session)] == ids


async def mark_as_an_older_release_did(
    sessions: Sessions, ids: list[int], at: datetime | None = None
) -> None:
    """Releases before migration 0016 marked published rows instead of deleting them."""
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(published_at=at or datetime.now(UTC))
        )


async def test_purge_removes_only_old_rows_an_older_release_marked(sessions: Sessions) -> None:
    ids = await _enqueue(sessions, 3)
    await mark_as_an_older_release_did(sessions, ids[:1], datetime.now(UTC) - timedelta(days=2))
    await mark_as_an_older_release_did(sessions, ids[1:2])
    async with sessions() as session, session.begin():
        # A marked row is published: no relay claims it again.
        assert [m.id for m in await claim_unpublished(session, limit=10)] == ids[2:]
    async with sessions() as session, session.begin():
        assert await purge_published(session, older_than=datetime.now(UTC) - timedelta(days=1)) == 1
    async with sessions() as session:
        left = (await session.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id))).all()
    assert left == ids[1:]


async def test_hundreds_of_thousands_of_ids_are_deleted_or_released_at_once(
    sessions: Sessions,
) -> None:
    """A writer's flush after a burst of wide plans may name more ids than SQLite binds in
    one statement (32,766 by default; Debian's build: 250,000): every backend takes them."""
    ids = await _enqueue_direct(sessions, 3, "orchestrator-1")
    many = [*range(10**9, 10**9 + 260_000), *ids]
    async with sessions() as session, session.begin():
        assert await release_to_relay(session, many) == 3
        assert await delete_published(session, many) == 3
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
