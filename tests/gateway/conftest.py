"""Gateway fixtures: the app on test Resources, parametrized over the two stacks.

``unit``: SQLite + fakeredis + local objects + the in-process bus. ``integration``: real
PostgreSQL (fresh schema), Redis (unique key prefix), MinIO (unique bucket) and Kafka
(unique topic prefix), all removed afterwards. A test that only makes sense on one stack
uses ``@unit_only`` (below, as ``pytest.mark.parametrize(..., indirect=True)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cadenza_events import Envelope, Topic
from cadenza_gateway import GatewaySettings, create_app
from cadenza_runtime import Resources
from fastapi import FastAPI
from support.auth import TenantKeys
from support.stacks import mark_by_stack, stack_resources

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_stack(items, HERE)


@pytest.fixture(params=["unit", "integration"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def resources(
    stack: str, tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    async with stack_resources(stack, tmp_path, unique_id, require_services) as res:
        yield res


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
async def client(app: FastAPI, resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated with an all-scope API key of tenant ``default``; a request's
    ``X-Tenant-Id`` header picks another tenant's key instead (see support.auth)."""
    # raise_app_exceptions=False: a server error must reach the test as a 500 response.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", auth=TenantKeys(resources)
    ) as c:
        yield c


@pytest_asyncio.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The same app without a credential."""
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
