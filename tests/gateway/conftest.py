"""Gateway fixtures: the app on test Resources, parametrized over the two stacks.

``unit``: SQLite + fakeredis + local objects + the in-process bus. ``integration``: real
PostgreSQL (fresh schema), Redis (unique key prefix), MinIO (unique bucket) and Kafka
(unique topic prefix), all removed afterwards. A test that only makes sense on one stack
uses ``@unit_only`` (below, as ``pytest.mark.parametrize(..., indirect=True)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cadenza_events import BusSettings, Envelope, MemoryBroker, Topic
from cadenza_gateway import GatewaySettings, create_app
from cadenza_runtime import Resources, open_resources
from cadenza_state import S3ObjectStore, StateSettings
from fastapi import FastAPI
from support.cleanup import drop_bucket, drop_schema

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE not in item.path.parents:
            continue
        callspec = getattr(item, "callspec", None)
        stack = callspec.params.get("stack") if callspec is not None else None
        item.add_marker(pytest.mark.integration if stack == "integration" else pytest.mark.unit)


@pytest.fixture(params=["unit", "integration"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def unit_state(tmp_path: Path, unique_id: str, **overrides: Any) -> StateSettings:
    return StateSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        redis_backend="memory",
        redis_key_prefix=f"{unique_id}:",
        object_store="local",
        object_store_dir=tmp_path / "objects",
        **overrides,
    )


@pytest_asyncio.fixture
async def resources(
    stack: str, tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    if stack == "unit":
        state = unit_state(tmp_path, unique_id)
        bus = BusSettings(backend="memory", topic_prefix=f"{unique_id}.", partitions=3)
        res = await open_resources(bus, state, broker=MemoryBroker())
    else:
        require_services("kafka", "postgres", "redis", "minio")
        state = StateSettings(
            database_schema=unique_id, redis_key_prefix=f"{unique_id}:", s3_bucket=unique_id
        )
        bus = BusSettings(
            backend="kafka", topic_prefix=f"{unique_id}.", partitions=3, commit_interval_s=0.05
        )
        res = await open_resources(bus, state)
    try:
        yield res
    finally:
        hot = res.hot
        doomed = [k async for k in hot.redis.scan_iter(match=f"{hot.prefix}*")]
        if doomed:
            await hot.redis.delete(*doomed)
        bus_impl = res.bus
        await res.close()
        if stack == "integration":
            await drop_schema(state)
            await bus_impl.delete_topics()  # type: ignore[attr-defined]
            assert isinstance(res.objects, S3ObjectStore)
            await asyncio.to_thread(drop_bucket, res.objects)


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(
        host="127.0.0.1",
        port=0,
        max_body_bytes=256 * 1024,
        public_url="",
        default_tenant="default",
        readiness_timeout_s=2.0,
    )


@pytest.fixture
def app(resources: Resources, settings: GatewaySettings) -> FastAPI:
    return create_app(resources, settings)


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: a server error must reach the test as a 500 response.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as c:
        yield c


@pytest_asyncio.fixture
async def events(
    resources: Resources, unique_id: str
) -> AsyncIterator[Callable[[Topic], Awaitable[list[Envelope[Any]]]]]:
    """``got = await events(Topic.PLAN_REQUESTED)``: a list that fills with what arrives."""
    consumers = []

    async def subscribe(topic: Topic) -> list[Envelope[Any]]:
        got: list[Envelope[Any]] = []

        async def handle(env: Envelope[Any]) -> None:
            got.append(env)

        consumer = resources.bus.consumer([topic], f"{unique_id}-{topic.value}", handle)
        await consumer.start()
        consumers.append(consumer)
        return got

    yield subscribe
    for consumer in consumers:
        await consumer.stop()


GREET_YAML = """\
name: greet
description: Say hello.
inputs:
  who: {type: string, default: world}
  times: {type: integer, required: false}
tasks:
  - id: hello
    tool: transform
    with:
      greeting: "hello, ${{ inputs.who }}"
output: "${{ tasks.hello.output.greeting }}"
"""


@pytest.fixture
def greet_yaml() -> str:
    return GREET_YAML


@pytest_asyncio.fixture
async def register(
    client: httpx.AsyncClient,
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """``await register(yaml_text)`` → the 201 body of POST /v1/workflows."""

    async def post(document: str = GREET_YAML, **headers: str) -> dict[str, Any]:
        resp = await client.post(
            "/v1/workflows",
            content=document,
            headers={"Content-Type": "application/yaml", **headers},
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    return post
