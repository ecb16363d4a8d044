"""Transactional outbox: events are inserted in the caller's transaction and published
to Kafka by a relay after commit, so a state change and its events commit or vanish
together (DESIGN §4 "no lost work")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    any_,
    bindparam,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from cadenza_state.bulk import insert_many, reserve_ids, uses_copy
from cadenza_state.direct import Deferred, insert_rows, is_postgres
from cadenza_state.models import OutboxMessage


async def add_to_outbox(
    session: AsyncSession,
    *,
    topic: str,
    key: str | None,
    headers: Iterable[tuple[str, str | bytes]] = (),
    payload: bytes,
) -> OutboxMessage:
    """Queue one event; it becomes visible to the relay only when the caller commits.

    Header values may be str or UTF-8 bytes (CloudEvents binary-mode headers are text);
    they are stored as JSON strings and come back as bytes from ``kafka_headers()``.
    """
    message = OutboxMessage(
        topic=topic,
        key=key,
        headers=[[name, _text(value)] for name, value in headers],
        payload=payload,
    )
    session.add(message)
    await session.flush()  # assigns the id, which orders publication
    return message


@dataclass(frozen=True, slots=True)
class StagedMessage:
    """An outbox row inserted in bulk: what its writer needs to publish it after commit."""

    id: int
    topic: str
    key: str | None
    headers: list[tuple[str, bytes]]
    payload: bytes

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return self.headers


_OUTBOX: Any = OutboxMessage.__table__
# Built once: building a statement costs about as much CPU as executing it.
_INSERT_RETURNING_IDS = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)


async def insert_outbox(
    session: AsyncSession,
    rows: Sequence[tuple[str, str | None, list[tuple[str, bytes]], bytes]],
    *,
    publisher: str | None = None,
    into: Deferred | None = None,
) -> list[StagedMessage]:
    """Queue many events in ONE statement (no ORM objects: a plan of 10,000 tasks stages
    10,000 events); returns them with their ids, in the given order (the publication
    order). Rows are ``(topic, key, headers, payload)``. ``publisher``: the process that
    will publish them itself right after the commit (relays leave them alone for a grace
    period); None leaves them to the relay. ``into`` (PostgreSQL): a few rows' insert is
    sent as that group's last part, with the writes added to it before."""
    if not rows:
        return []
    table: Any = OutboxMessage.__table__
    values: list[dict[str, Any]] = [
        {
            "topic": topic,
            "key": key,
            "headers": [[name, value.decode()] for name, value in headers],
            "payload": payload,
            "publisher": publisher,
        }
        for topic, key, headers, payload in rows
    ]
    if uses_copy(session, len(values)):
        # A plan's thousands of rows: ids drawn from the sequence first, rows copied.
        ids = await reserve_ids(session, table, len(values))
        for value, row_id in zip(values, ids, strict=True):
            value["id"] = row_id
        await insert_many(session, table, values)
    elif is_postgres(session):  # a batch's few rows: one array per column, on asyncpg
        # Inserted in the arrays' order, so the serial ids ascend with the given rows.
        inserted = await insert_rows(session, table, values, returning=("id",), into=into)
        ids = sorted(row[0] for row in inserted)
    else:
        result = await session.execute(_INSERT_RETURNING_IDS, values)
        ids = [row[0] for row in result.all()]
    return [
        StagedMessage(i, topic, key, list(headers), payload)
        for i, (topic, key, headers, payload) in zip(ids, rows, strict=True)
    ]


def _ids_clause(session: AsyncSession, ids: Sequence[int]) -> Any:
    """``id IN ids``; on PostgreSQL as ``= ANY(:array)``: one bind, not thousands."""
    if session.get_bind().dialect.name == "postgresql":
        return OutboxMessage.id == any_(bindparam("outbox_ids", list(ids), type_=ARRAY(BigInteger)))
    return OutboxMessage.id.in_(list(ids))


_IDS_PER_SQLITE_STATEMENT = 500
"""SQLite binds each id of an ``IN`` list as a variable of its own, and refuses a statement
with more than 32,766 of them: a writer's flush after a burst of wide plans has more."""


async def _for_ids(
    session: AsyncSession, ids: Sequence[int], statement: Callable[[Any], Any]
) -> int:
    """``statement(<the ids' clause>)`` executed for ``ids``: once on PostgreSQL (one array
    bind, however many), in chunks elsewhere; returns how many rows it matched."""
    step = len(ids) if is_postgres(session) else _IDS_PER_SQLITE_STATEMENT
    matched = 0
    for start in range(0, len(ids), max(1, step)):
        chunk = ids[start : start + step]
        result = await session.execute(statement(_ids_clause(session, chunk)))
        matched += int(result.rowcount)  # type: ignore[attr-defined]
    return matched


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


async def claim_unpublished(
    session: AsyncSession, limit: int = 100, *, direct_before: datetime | None = None
) -> list[OutboxMessage]:
    """Lock and return up to ``limit`` unpublished messages, oldest first.

    On PostgreSQL rows are locked ``FOR UPDATE SKIP LOCKED`` until the caller's transaction
    ends, so concurrent relays never claim the same rows. Publish them, call
    :func:`delete_published`, then commit; a crash before commit releases the rows for the
    next claim (at-least-once: consumers dedupe). SQLite has no row locks: the dev engine's
    ``BEGIN IMMEDIATE`` serialises claimers instead.

    A row its writer publishes itself (``publisher`` set) is claimed only once it was
    created before ``direct_before``: by then its writer has sent it (and its mark is on the
    way) or died before sending it. None claims those rows whatever their age.
    """
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if direct_before is not None:
        stmt = stmt.where(
            or_(OutboxMessage.publisher.is_(None), OutboxMessage.created_at < direct_before)
        )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.scalars(stmt)).all())


async def oldest_unpublished(session: AsyncSession) -> datetime | None:
    """When the oldest row still to publish was written; None: none. The lowest id of a
    table that holds only the rows in flight: one primary-key probe."""
    return await session.scalar(
        select(OutboxMessage.created_at)
        .where(OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(1)
    )


async def release_to_relay(session: AsyncSession, ids: Sequence[int]) -> int:
    """Hand rows a writer could not publish itself (the bus was down) to the relays now,
    instead of after the grace period; returns how many were still unpublished."""
    return await _for_ids(
        session,
        ids,
        lambda these: (
            update(OutboxMessage)
            .where(these, OutboxMessage.published_at.is_(None))
            .values(publisher=None)
        ),
    )


async def delete_published(session: AsyncSession, ids: Sequence[int]) -> int:
    """Delete rows once they are published; returns how many were still there.

    A published row has nothing left to do: deleting it at once (rather than marking it
    and purging it later) keeps the table as small as the rows in flight, and costs the
    database a small delete record instead of a whole new row version and its index entry.
    On PostgreSQL the ids go as one array (``= ANY``), however many there are."""
    return await _for_ids(session, ids, lambda these: delete(OutboxMessage).where(these))


async def purge_published(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete rows marked published before ``older_than``; returns the count. Releases before
    migration 0016 marked published rows (``published_at``) instead of deleting them: this
    clears what they left, during and after a rolling upgrade."""
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < older_than
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
