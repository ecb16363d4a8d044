"""Tear-down of what a test created on the real services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cadenza_state import HotState, S3ObjectStore, StateSettings, create_engine, create_redis
from sqlalchemy import text


async def drop_schema(settings: StateSettings) -> None:
    """Drop ``settings.database_schema`` and everything in it."""
    admin = create_engine(settings.model_copy(update={"database_schema": None}))
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE'))
    finally:
        await admin.dispose()


def drop_bucket(store: S3ObjectStore) -> None:
    """Empty and delete the store's bucket (blocking: call through asyncio.to_thread)."""
    client = store.client
    if not client.bucket_exists(store.bucket):
        return
    for obj in client.list_objects(store.bucket, recursive=True):
        if obj.object_name is not None:
            client.remove_object(store.bucket, obj.object_name)
    client.remove_bucket(store.bucket)


@asynccontextmanager
async def prefixed_hot_state(backend: str, prefix: str) -> AsyncIterator[HotState]:
    """HotState on real Redis (``"redis"``) or fakeredis (``"memory"``) under ``prefix``;
    its keys are deleted afterwards (SCAN in big steps: the shared Redis holds many keys)."""
    state = HotState(create_redis(StateSettings(redis_backend=backend)), prefix=prefix)
    try:
        yield state
    finally:
        keys = [k async for k in state.redis.scan_iter(match=f"{prefix}*", count=10_000)]
        if keys:
            await state.redis.delete(*keys)
        await state.aclose()
