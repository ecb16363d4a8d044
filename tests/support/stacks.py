"""The two stacks most suites run on, as one async context manager.

``unit``: SQLite + fakeredis + local objects + the in-process bus. ``integration``: real
PostgreSQL (fresh schema), Redis (unique key prefix), MinIO (unique bucket) and Kafka
(unique topic prefix), all removed afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cadenza_events import BusSettings, MemoryBroker
from cadenza_runtime import Resources, open_resources
from cadenza_state import S3ObjectStore, StateSettings

from support.cleanup import drop_bucket, drop_schema


def mark_by_stack(items: list[pytest.Item], folder: Path) -> None:
    """Mark the tests under ``folder`` `integration` or `unit` by their ``stack`` param."""
    for item in items:
        if folder not in item.path.parents:
            continue
        callspec = getattr(item, "callspec", None)
        stack = callspec.params.get("stack") if callspec is not None else None
        item.add_marker(pytest.mark.integration if stack == "integration" else pytest.mark.unit)


def unit_state(tmp_path: Path, unique_id: str, **overrides: Any) -> StateSettings:
    return StateSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        redis_backend="memory",
        redis_key_prefix=f"{unique_id}:",
        object_store="local",
        object_store_dir=tmp_path / "objects",
        **overrides,
    )


# Tests read what a transaction staged from the outbox: the rows this process publishes
# itself stay until the test ends (deleted at the relay's stop) instead of a second later.
KEEP_PUBLISHED_S = 3600.0


def hold_relay(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay publishes nothing, so it deletes nothing: what a transaction staged for it
    (commands, replayed dead letters) stays in the outbox for the test to read. Only for
    tests in which nothing consumes those topics."""

    async def held() -> int:
        return 0

    monkeypatch.setattr(resources.relay, "relay_once", held)


@asynccontextmanager
async def stack_resources(
    stack: str, tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    if stack == "unit":
        state = unit_state(tmp_path, unique_id)
        bus = BusSettings(backend="memory", topic_prefix=f"{unique_id}.", partitions=3)
        res = await open_resources(
            bus, state, broker=MemoryBroker(), outbox_delete_interval_s=KEEP_PUBLISHED_S
        )
    else:
        require_services("kafka", "postgres", "redis", "minio")
        state = StateSettings(
            database_schema=unique_id, redis_key_prefix=f"{unique_id}:", s3_bucket=unique_id
        )
        bus = BusSettings(
            backend="kafka", topic_prefix=f"{unique_id}.", partitions=3, commit_interval_s=0.05
        )
        res = await open_resources(bus, state, outbox_delete_interval_s=KEEP_PUBLISHED_S)
    try:
        yield res
    finally:
        hot = res.hot
        doomed = [k async for k in hot.redis.scan_iter(match=f"{hot.prefix}*", count=10_000)]
        if doomed:
            await hot.redis.delete(*doomed)
        bus_impl = res.bus
        await res.close()
        if stack == "integration":
            await drop_schema(state)
            await bus_impl.delete_topics()  # type: ignore[attr-defined]
            assert isinstance(res.objects, S3ObjectStore)
            await asyncio.to_thread(drop_bucket, res.objects)
