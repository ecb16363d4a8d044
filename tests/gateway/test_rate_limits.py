"""Per-tenant and per-key rate limits, counted in Redis (fakeredis and the real one)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest_asyncio
from cadenza_gateway import GatewaySettings, create_app
from cadenza_gateway.auth import AuthSettings
from cadenza_runtime import Resources
from cadenza_state import RunRecord
from sqlalchemy import update
from support.auth import issue_key


@pytest_asyncio.fixture
async def gateways(resources: Resources) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """``gateways(**auth)`` → a client of a new gateway app (replica) on the same stack."""
    clients: list[httpx.AsyncClient] = []

    def make(**auth: Any) -> httpx.AsyncClient:
        app = create_app(resources, GatewaySettings(auth=AuthSettings(**auth)))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_tenant_over_its_limit_gets_429_with_retry_after_across_replicas(
    gateways: Callable[..., httpx.AsyncClient], resources: Resources
) -> None:
    limits = {"rate_limit_per_minute": 3}
    one, two = gateways(**limits), gateways(**limits)
    first, second = await issue_key(resources, "acme"), await issue_key(resources, "acme")
    ok = await one.get("/v1/runs", headers=bearer(first))
    assert ok.status_code == 200
    assert ok.headers["ratelimit-limit"] == "3"
    assert ok.headers["ratelimit-remaining"] == "2"
    assert ok.headers["ratelimit-policy"] == "3;w=60"
    # Another key of the same tenant, through another replica: the same budget.
    assert (await two.get("/v1/runs", headers=bearer(second))).status_code == 200
    assert (await one.get("/v1/workflows", headers=bearer(second))).status_code == 200
    limited = await two.get("/v1/runs", headers=bearer(first))
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    problem = limited.json()
    assert problem["type"] == "urn:cadenza:problem:rate-limited"
    assert problem["limited"] == "tenant"
    assert problem["limit"] == 3
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-remaining"] == "0"
    # Another tenant is not affected.
    other = await issue_key(resources, "other")
    assert (await one.get("/v1/runs", headers=bearer(other))).status_code == 200


async def test_per_tenant_overrides_and_per_key_limits(
    gateways: Callable[..., httpx.AsyncClient], resources: Resources
) -> None:
    api = gateways(
        rate_limit_per_minute=2, tenant_rate_limits={"big": 0}, rate_limit_key_per_minute=4
    )
    big_a, big_b = await issue_key(resources, "big"), await issue_key(resources, "big")
    # "big" has no tenant limit (override 0), but each of its keys has 4 per minute.
    for _ in range(4):
        assert (await api.get("/v1/runs", headers=bearer(big_a))).status_code == 200
    limited = await api.get("/v1/runs", headers=bearer(big_a))
    assert limited.status_code == 429
    assert limited.json()["limited"] == "credential"
    assert (await api.get("/v1/runs", headers=bearer(big_b))).status_code == 200
    small = await issue_key(resources, "small")
    codes = [(await api.get("/v1/runs", headers=bearer(small))).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_no_limits_configured_means_no_headers_and_no_429(
    gateways: Callable[..., httpx.AsyncClient], resources: Resources
) -> None:
    api = gateways()
    key = await issue_key(resources, "acme")
    for _ in range(5):
        resp = await api.get("/v1/runs", headers=bearer(key))
        assert resp.status_code == 200
        assert "ratelimit-limit" not in resp.headers


async def test_unauthenticated_requests_do_not_spend_a_tenants_budget(
    gateways: Callable[..., httpx.AsyncClient], resources: Resources
) -> None:
    api = gateways(rate_limit_per_minute=1)
    for _ in range(3):
        resp = await api.get("/v1/runs", headers=bearer("cdz_0123456789ab_forged"))
        assert resp.status_code == 401
    key = await issue_key(resources, "acme")
    assert (await api.get("/v1/runs", headers=bearer(key))).status_code == 200


async def test_a_tenant_at_its_active_run_quota_gets_429_until_one_finishes(
    gateways: Callable[..., httpx.AsyncClient], resources: Resources
) -> None:
    api = gateways(max_active_runs=2, tenant_max_active_runs={"big": 0})
    key = bearer(await issue_key(resources, "acme"))
    spec = {"name": "w", "tasks": [{"id": "a", "tool": "noop"}]}
    first = await api.post("/v1/runs", json={"spec": spec}, headers=key)
    second = await api.post(
        "/v1/runs", json={"spec": spec}, headers={**key, "Idempotency-Key": "k2"}
    )
    assert (first.status_code, second.status_code) == (201, 201)
    third = await api.post("/v1/runs", json={"spec": spec}, headers=key)
    assert third.status_code == 429
    assert third.json()["type"] == "urn:cadenza:problem:run-quota-exceeded"
    assert third.json()["active"] == 2
    assert third.headers["retry-after"] == "5"
    # A replay of an existing run is an answer, not a new run.
    replay = await api.post(
        "/v1/runs", json={"spec": spec}, headers={**key, "Idempotency-Key": "k2"}
    )
    assert replay.status_code == 200
    assert replay.json()["id"] == second.json()["id"]
    # Once a run finishes (the orchestrator writes its status), a new one fits.
    async with resources.sessions() as session, session.begin():
        await session.execute(
            update(RunRecord).where(RunRecord.id == first.json()["id"]).values(status="succeeded")
        )
    assert (await api.post("/v1/runs", json={"spec": spec}, headers=key)).status_code == 201
    # Other tenants have their own count; "big" is unlimited.
    big = bearer(await issue_key(resources, "big"))
    for _ in range(3):
        assert (await api.post("/v1/runs", json={"spec": spec}, headers=big)).status_code == 201
