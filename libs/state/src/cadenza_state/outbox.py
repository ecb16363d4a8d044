"""Transactional outbox: events are inserted in the caller's transaction and published
to Kafka by a relay after commit, so a state change and its events commit or vanish
together (DESIGN §4 "no lost work")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cadenza_state.models import OutboxMessage
from cadenza_state.types import utcnow


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


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


async def claim_unpublished(session: AsyncSession, limit: int = 100) -> list[OutboxMessage]:
    """Lock and return up to ``limit`` unpublished messages, oldest first.

    On PostgreSQL rows are locked ``FOR UPDATE SKIP LOCKED`` until the caller's transaction
    ends, so concurrent relays never claim the same rows. Publish them, call
    :func:`mark_published`, then commit; a crash before commit releases the rows for the
    next claim (at-least-once: consumers dedupe). SQLite has no row locks: the dev engine's
    ``BEGIN IMMEDIATE`` serialises claimers instead.
    """
    stmt = (
        select(OutboxMessage)
        .where(OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.scalars(stmt)).all())


async def claim_ids(session: AsyncSession, ids: Sequence[int]) -> list[int]:
    """Lock the still-unpublished messages among ``ids`` (``SKIP LOCKED``: a relay that
    claimed one first publishes it instead), in id order. For the process that just
    committed them and publishes them itself, without reading their bodies back."""
    if not ids:
        return []
    stmt = (
        select(OutboxMessage.id)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
        .order_by(OutboxMessage.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.scalars(stmt)).all())


async def mark_published(
    session: AsyncSession, ids: Sequence[int], *, at: datetime | None = None
) -> int:
    """Mark messages published; returns how many were still unpublished."""
    if not ids:
        return 0
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_(None))
        .values(published_at=at or utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def purge_published(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete messages published before ``older_than`` (housekeeping); returns the count."""
    result = await session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < older_than
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
