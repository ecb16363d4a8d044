"""Tenant B, holding every scope of its own tenant, can read and change nothing of tenant A."""

from __future__ import annotations

from typing import Any

import httpx
from cadenza_runtime import Resources
from support.auth import issue_key

A = {"X-Tenant-Id": "acme"}


async def _seed_acme(client: httpx.AsyncClient, register: Any) -> dict[str, str]:
    await register(**A)
    agent = await client.post(
        "/v1/agents",
        json={"name": "helper", "system_prompt": "Be brief.", "model": "local:smollm2-135m"},
        headers=A,
    )
    assert agent.status_code == 201, agent.text
    run = await client.post("/v1/runs", json={"workflow": "greet"}, headers=A)
    assert run.status_code == 201, run.text
    records = {"records": [{"key": "tx_1", "data": {"amount": 1}}]}
    dataset = await client.put("/v1/datasets/tx/records", json=records, headers=A)
    assert dataset.status_code == 200, dataset.text
    collection = await client.post("/v1/collections", json={"name": "handbook"}, headers=A)
    assert collection.status_code == 201, collection.text
    document = await client.post(
        "/v1/collections/handbook/documents",
        files={"file": ("a.txt", b"refunds take 5 days", "text/plain")},
        headers=A,
    )
    assert document.status_code in (201, 202), document.text
    return {"run": run.json()["id"], "document": document.json()["id"]}


async def test_another_tenant_sees_and_changes_nothing(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, resources: Resources, register: Any
) -> None:
    ids = await _seed_acme(client, register)
    run, doc = ids["run"], ids["document"]
    intruder = {"Authorization": f"Bearer {await issue_key(resources, 'intruder')}"}

    async def as_b(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await anonymous.request(method, path, headers=intruder, **kwargs)

    empty_lists = [
        "/v1/workflows",
        "/v1/agents",
        "/v1/runs",
        "/v1/audit",
        "/v1/datasets",
        "/v1/collections",
    ]
    for path in empty_lists:
        resp = await as_b("GET", path)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.json()["items"] == [], path
    keys = (await as_b("GET", "/v1/api-keys")).json()["items"]
    assert {k["created_by"] for k in keys} == {"test"}
    assert len(keys) == 1  # only its own
    # (Usage per tenant: tests/gateway/test_agents_usage.py records calls for two tenants.)

    not_found = [
        ("GET", "/v1/workflows/greet"),
        ("GET", "/v1/workflows/greet/versions"),
        ("GET", "/v1/workflows/greet/versions/1"),
        ("GET", "/v1/agents/helper"),
        ("GET", "/v1/agents/helper/versions/1"),
        ("GET", f"/v1/runs/{run}"),
        ("GET", f"/v1/runs/{run}/status"),
        ("GET", f"/v1/runs/{run}/events"),
        ("GET", f"/v1/runs/{run}/timeline"),
        ("POST", f"/v1/runs/{run}/cancel"),
        ("GET", "/v1/datasets/tx/records/tx_1"),
        ("GET", "/v1/collections/handbook"),
        ("GET", "/v1/collections/handbook/documents"),
        ("GET", f"/v1/collections/handbook/documents/{doc}"),
        ("DELETE", f"/v1/collections/handbook/documents/{doc}"),
        ("POST", "/v1/collections/handbook/search"),
    ]
    for method, path in not_found:
        body = {"query": "refunds"} if path.endswith("/search") else None
        resp = await as_b(method, path, json=body)
        assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
    upload = await as_b(
        "POST",
        "/v1/collections/handbook/documents",
        files={"file": ("b.txt", b"mine now", "text/plain")},
    )
    assert upload.status_code == 404
    await as_b("DELETE", "/v1/datasets/tx")

    # Acme's data is intact and still its own.
    assert (await client.get(f"/v1/runs/{run}", headers=A)).status_code == 200
    record = await client.get("/v1/datasets/tx/records/tx_1", headers=A)
    assert record.status_code == 200
    document = await client.get(f"/v1/collections/handbook/documents/{doc}", headers=A)
    assert document.status_code == 200
    audit = (await client.get("/v1/audit", headers=A)).json()["items"]
    assert {e["action"] for e in audit} >= {"workflow.registered", "run.created"}
    assert all(e["actor"].startswith("key:") for e in audit)
