"""Tear-down of what a test created on the real services."""

from __future__ import annotations

from cadenza_state import S3ObjectStore, StateSettings, create_engine
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
