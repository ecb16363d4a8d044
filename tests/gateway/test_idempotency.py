"""Idempotency-Key: a retried request returns the run the first one created."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from cadenza_events import Topic
from cadenza_runtime import Resources
from cadenza_state import OutboxMessage, RunRecord
from sqlalchemy import func, select

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def counts(resources: Resources) -> tuple[int, int]:
    """(runs, plan.requested outbox rows)"""
    async with resources.sessions() as session:
        runs = await session.scalar(select(func.count()).select_from(RunRecord))
        plans = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.topic == resources.registry.name(Topic.PLAN_REQUESTED))
        )
    return int(runs or 0), int(plans or 0)


async def test_same_key_returns_the_same_run(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    body = {"workflow": "greet", "inputs": {"who": "ada"}}
    headers = {"Idempotency-Key": "order-42"}
    first = await client.post("/v1/runs", json=body, headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/v1/runs", json=body, headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["idempotency_key"] == "order-42"
    assert await counts(resources) == (1, 1)
    # A new key is a new run.
    other = await client.post("/v1/runs", json=body, headers={"Idempotency-Key": "order-43"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_concurrent_requests_with_one_key_create_one_run(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    body = {"workflow": "greet", "inputs": {"who": "ada"}}
    responses = await asyncio.gather(
        *(
            client.post("/v1/runs", json=body, headers={"Idempotency-Key": "burst"})
            for _ in range(6)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 200, 200, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await counts(resources) == (1, 1)


@unit_only
async def test_a_key_reused_for_a_different_request_is_refused(
    client: httpx.AsyncClient, resources: Resources, register
) -> None:
    await register()
    headers = {"Idempotency-Key": "k1"}
    first = await client.post(
        "/v1/runs", json={"workflow": "greet", "inputs": {"who": "a"}}, headers=headers
    )
    assert first.status_code == 201
    for body in [
        {"workflow": "greet", "inputs": {"who": "b"}},
        {"workflow": "greet", "inputs": {"nope": 1}},
        {"workflow": "greet@2"},
        {"spec": {"name": "greet", "tasks": [{"id": "a", "tool": "noop"}]}},
    ]:
        resp = await client.post("/v1/runs", json=body, headers=headers)
        assert resp.status_code == 422, (body, resp.text)
        problem = resp.json()
        assert problem["type"] == "urn:cadenza:problem:idempotency-key-reused"
        assert problem["run_id"] == first.json()["id"]
    # Equivalent requests still replay: explicit version, inputs equal to the defaults.
    same = await client.post(
        "/v1/runs", json={"workflow": "greet@1", "inputs": {"who": "a"}}, headers=headers
    )
    assert same.status_code == 200
    assert await counts(resources) == (1, 1)


@unit_only
async def test_replay_survives_a_newer_version_and_keys_are_per_tenant(
    client: httpx.AsyncClient, register, greet_yaml: str
) -> None:
    await register(greet_yaml)
    headers = {"Idempotency-Key": "k"}
    first = await client.post("/v1/runs", json={"workflow": "greet"}, headers=headers)
    await register(greet_yaml.replace("default: world", "default: moon"))
    replay = await client.post("/v1/runs", json={"workflow": "greet"}, headers=headers)
    assert replay.status_code == 200
    assert replay.json()["workflow_version"] == 1
    assert replay.json()["id"] == first.json()["id"]

    await register(greet_yaml, **{"X-Tenant-Id": "acme"})
    elsewhere = await client.post(
        "/v1/runs", json={"workflow": "greet"}, headers={**headers, "X-Tenant-Id": "acme"}
    )
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != first.json()["id"]
