"""Fixtures of the worker tests: ``stack`` (in-process by default; real services for tests
parametrized with ``BOTH_STACKS``) and ``http_server``. Helpers are in worker_support.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cadenza_events import Topic
from cadenza_runtime import open_resources
from support.cleanup import drop_schema
from worker_support import (
    HttpServer,
    Stack,
    cleanup_real,
    http_handler,
    memory_settings,
    real_settings,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything here is a unit test unless it runs on the real stack.
    for item in items:
        if item.path.parent.name == "worker" and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)


@pytest_asyncio.fixture(loop_scope="function")
async def stack(
    request: pytest.FixtureRequest,
    require_services: Callable[..., None],
    unique_id: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    kind = getattr(request, "param", "memory")
    if kind == "real":
        require_services("kafka", "postgres", "redis", "minio")
        bus_settings, state_settings = real_settings(unique_id)
    else:
        bus_settings, state_settings = memory_settings(unique_id, tmp_path)
    resources = await open_resources(bus_settings, state_settings)
    harness = Stack(kind, unique_id, resources)
    collector = resources.bus.consumer(
        [Topic.TASK_RESULT, Topic.RUN_EVENTS, Topic.DLQ], f"{unique_id}-observer", harness._collect
    )
    await collector.start()
    try:
        yield harness
    finally:
        for worker in harness.workers:
            await worker.stop()
        await collector.stop(grace_s=1)
        try:
            if kind == "real":
                await cleanup_real(resources, state_settings)
        finally:
            await resources.close()
            if kind == "real":
                await resources.bus.delete_topics()  # type: ignore[attr-defined]
                await drop_schema(state_settings)


@pytest_asyncio.fixture(loop_scope="function")
async def http_server() -> AsyncIterator[HttpServer]:
    holder: list[HttpServer] = []
    running: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        running.add(me)
        try:
            await http_handler(holder[0], reader, writer)
        finally:
            running.discard(me)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    holder.append(HttpServer(port=server.sockets[0].getsockname()[1]))
    try:
        yield holder[0]
    finally:
        server.close()
        for task in list(running):  # e.g. /slow, whose client gave up
            task.cancel()
        await server.wait_closed()
