"""A database that is down answers 503 with Retry-After (never 500) and changes nothing."""

from __future__ import annotations

import httpx
import pytest
import pytest_asyncio
from cadenza_runtime import Resources
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

pytestmark = pytest.mark.parametrize("stack", ["unit"], indirect=True)


@pytest_asyncio.fixture
async def database_down(resources: Resources, client: httpx.AsyncClient) -> None:
    """Point the gateway's sessions at a port nothing listens on (a stopped PostgreSQL)."""
    await client.auth.key("default")  # type: ignore[attr-defined]  # exists before the outage
    dead = create_async_engine("postgresql+asyncpg://cadenza@127.0.0.1:1/cadenza")
    resources.state.sessions = async_sessionmaker(dead, expire_on_commit=False)


@pytest.mark.usefixtures("database_down")
async def test_reads_and_writes_answer_503_with_retry_after(client: httpx.AsyncClient) -> None:
    spec = {"name": "w", "tasks": [{"id": "a", "kind": "tool", "tool": "noop"}]}
    for method, path, body in [
        ("GET", "/v1/runs", None),
        ("POST", "/v1/runs", {"spec": spec, "inputs": {}}),
        ("GET", "/v1/workflows", None),
    ]:
        resp = await client.request(method, path, json=body)
        assert resp.status_code == 503, (method, path, resp.text)
        assert resp.headers["retry-after"] == "5"
        problem = resp.json()
        assert problem["type"].endswith(":unavailable")
        assert problem["status"] == 503
        assert problem["instance"] == path
