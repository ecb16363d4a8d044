"""Stage events in the transactional outbox: they are published only if the caller commits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cadenza_events import Envelope, Topic, TopicRegistry, encode
from cadenza_events.tracing import inject
from cadenza_state import OutboxMessage, StagedMessage, insert_outbox
from cadenza_state.direct import Deferred
from sqlalchemy.ext.asyncio import AsyncSession

OutboxRow = tuple[str, str | None, list[tuple[str, bytes]], bytes]
"""An encoded outbox row: ``(physical topic, key, headers, payload)``."""


def stage_events(
    session: AsyncSession, registry: TopicRegistry, items: Iterable[tuple[Topic, Envelope[Any]]]
) -> int:
    """Queue events in ``session``'s transaction (ORM rows, flushed with the caller's
    changes: for low-rate writers); returns how many were staged."""
    count = 0
    for topic, env in items:
        env = inject(env)  # the trace context of the request/handler that caused the event
        raw_key, value, headers = encode(env, registry.key_for(topic, env))
        session.add(
            OutboxMessage(
                topic=registry.name(topic),
                key=raw_key.decode() if raw_key is not None else None,
                headers=[[name, v.decode()] for name, v in headers],
                payload=value,
            )
        )
        count += 1
    return count


async def stage_outbox(
    session: AsyncSession,
    registry: TopicRegistry,
    items: Iterable[tuple[Topic, Envelope[Any]]],
    *,
    publisher: str | None,
    into: Deferred | None = None,
) -> list[StagedMessage]:
    """Queue events in ``session``'s transaction with ONE bulk insert, encoded exactly as a
    publisher would, and return them with their ids, so the committing process can publish
    them right after the commit (``OutboxRelay.publish_committed``, whose ``publisher_id``
    goes in ``publisher``). Insertion order gives the ids and so the publication order.
    ``into``: the insert goes as that group's last part (``cadenza_state.direct.Deferred``).
    A writer that sends some of them before its commit encodes them first
    (``encode_outbox``), then inserts them (``cadenza_state.insert_outbox``)."""
    rows = encode_outbox(registry, items)
    return await insert_outbox(session, rows, publisher=publisher, into=into)


def encode_outbox(
    registry: TopicRegistry, items: Iterable[tuple[Topic, Envelope[Any]]]
) -> list[OutboxRow]:
    """The outbox rows of these events, encoded exactly as a publisher would, in order."""
    rows: list[OutboxRow] = []
    for topic, env in items:
        env = inject(env)  # the trace context of the request/handler that caused the event
        raw_key, value, headers = encode(env, registry.key_for(topic, env))
        key = raw_key.decode() if raw_key is not None else None
        rows.append((registry.name(topic), key, headers, value))
    return rows


async def stage_event(
    session: AsyncSession, registry: TopicRegistry, topic: Topic, env: Envelope[Any]
) -> None:
    """Queue one event and flush, so a failure surfaces inside the caller's transaction."""
    stage_events(session, registry, [(topic, env)])
    await session.flush()
