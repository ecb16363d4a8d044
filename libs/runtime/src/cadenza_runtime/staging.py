"""Stage events in the transactional outbox: they are published only if the caller commits."""

from __future__ import annotations

from typing import Any

from cadenza_events import Envelope, Topic, TopicRegistry, encode
from cadenza_events.tracing import inject
from cadenza_state import add_to_outbox
from sqlalchemy.ext.asyncio import AsyncSession


async def stage_event(
    session: AsyncSession, registry: TopicRegistry, topic: Topic, env: Envelope[Any]
) -> None:
    """Encode ``env`` exactly as a publisher would and queue it in ``session``'s transaction."""
    env = inject(env)  # the trace context of the request/handler that caused the event
    key = registry.key_for(topic, env)
    raw_key, value, headers = encode(env, key)
    await add_to_outbox(
        session,
        topic=registry.name(topic),
        key=raw_key.decode() if raw_key is not None else None,
        headers=headers,
        payload=value,
    )
