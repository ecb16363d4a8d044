"""Stage events in the transactional outbox: they are published only if the caller commits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cadenza_events import Envelope, Topic, TopicRegistry, encode
from cadenza_events.tracing import inject
from cadenza_state import OutboxMessage
from sqlalchemy.ext.asyncio import AsyncSession


def stage_events(
    session: AsyncSession, registry: TopicRegistry, items: Iterable[tuple[Topic, Envelope[Any]]]
) -> int:
    """Queue events in ``session``'s transaction; returns how many were staged."""
    return len(stage_outbox(session, registry, items))


def stage_outbox(
    session: AsyncSession, registry: TopicRegistry, items: Iterable[tuple[Topic, Envelope[Any]]]
) -> list[OutboxMessage]:
    """Queue events in ``session``'s transaction, encoded exactly as a publisher would, and
    return the rows (they have ids once the transaction committed), so the committing
    process can publish them at once (``OutboxRelay.publish_committed``).

    No flush per row (a fan-out stages thousands); insertion order gives the outbox ids and
    so the publication order.
    """
    rows = []
    for topic, env in items:
        env = inject(env)  # the trace context of the request/handler that caused the event
        raw_key, value, headers = encode(env, registry.key_for(topic, env))
        rows.append(
            OutboxMessage(
                topic=registry.name(topic),
                key=raw_key.decode() if raw_key is not None else None,
                headers=[[name, v.decode()] for name, v in headers],
                payload=value,
            )
        )
    session.add_all(rows)
    return rows


async def stage_event(
    session: AsyncSession, registry: TopicRegistry, topic: Topic, env: Envelope[Any]
) -> None:
    """Queue one event and flush, so a failure surfaces inside the caller's transaction."""
    stage_events(session, registry, [(topic, env)])
    await session.flush()
