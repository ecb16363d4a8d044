"""/v1/datasets: upsert reference records (JSON or YAML), list, read, delete; tenants."""

from __future__ import annotations

import json
from typing import Any

import httpx
from cadenza_runtime import Resources
from cadenza_state import AuditLogEntry
from sqlalchemy import select

TRANSACTIONS = {
    "records": [
        {"key": "tx_1", "data": {"amount": 120.5, "currency": "EUR", "psp": "stripe"}},
        {"key": "tx_2", "data": {"amount": 9.99, "currency": "USD", "psp": "adyen"}},
    ]
}

TRANSACTIONS_YAML = """\
dataset: transactions
records:
  - key: tx_3
    data: {amount: 42, status: failed, notes: [timeout, retry]}
"""


async def put(client: httpx.AsyncClient, dataset: str, body: Any, **headers: str) -> httpx.Response:
    if isinstance(body, str):
        return await client.put(
            f"/v1/datasets/{dataset}/records",
            content=body,
            headers={"Content-Type": "application/yaml", **headers},
        )
    return await client.put(f"/v1/datasets/{dataset}/records", json=body, headers=headers)


async def test_records_are_upserted_listed_read_and_deleted(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    resp = await put(client, "transactions", TRANSACTIONS)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"dataset": "transactions", "upserted": 2, "deleted": 0, "records": 2}

    # YAML works too; an existing key is replaced, new keys are added.
    changed = TRANSACTIONS_YAML + "  - key: tx_1\n    data: {amount: 1, currency: EUR}\n"
    resp = await put(client, "transactions", changed)
    assert resp.status_code == 200, resp.text
    assert resp.json()["records"] == 3
    await put(client, "psps", {"records": [{"key": "stripe", "data": {"status": "degraded"}}]})

    listed = (await client.get("/v1/datasets")).json()["items"]
    assert [(d["dataset"], d["records"]) for d in listed] == [("psps", 1), ("transactions", 3)]

    record = (await client.get("/v1/datasets/transactions/records/tx_1")).json()
    assert record["data"] == {"amount": 1, "currency": "EUR"}
    assert record["key"] == "tx_1"
    assert (await client.get("/v1/datasets/transactions/records/tx_3")).json()["data"]["notes"] == [
        "timeout",
        "retry",
    ]

    missing = await client.get("/v1/datasets/transactions/records/tx_9")
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:cadenza:problem:record-not-found"

    assert (await client.delete("/v1/datasets/transactions")).status_code == 204
    assert (await client.get("/v1/datasets/transactions/records/tx_1")).status_code == 404
    again = await client.delete("/v1/datasets/transactions")
    assert again.status_code == 404
    assert again.json()["type"] == "urn:cadenza:problem:dataset-not-found"
    assert [d["dataset"] for d in (await client.get("/v1/datasets")).json()["items"]] == ["psps"]

    async with resources.sessions() as session:
        actions = (await session.scalars(select(AuditLogEntry.action))).all()
    assert actions.count("dataset.loaded") == 3
    assert "dataset.deleted" in actions


async def test_replace_removes_records_the_body_leaves_out(client: httpx.AsyncClient) -> None:
    await put(client, "transactions", TRANSACTIONS)
    resp = await client.put(
        "/v1/datasets/transactions/records?replace=true",
        json={"records": [{"key": "tx_2", "data": {"amount": 3}}]},
    )
    assert resp.json() == {"dataset": "transactions", "upserted": 1, "deleted": 1, "records": 1}
    assert (await client.get("/v1/datasets/transactions/records/tx_1")).status_code == 404


async def test_tenants_see_only_their_own_datasets(client: httpx.AsyncClient) -> None:
    await put(client, "transactions", TRANSACTIONS, **{"X-Tenant-Id": "acme"})
    assert (await client.get("/v1/datasets")).json()["items"] == []
    assert (await client.get("/v1/datasets/transactions/records/tx_1")).status_code == 404
    assert (await client.delete("/v1/datasets/transactions")).status_code == 404
    acme = await client.get(
        "/v1/datasets/transactions/records/tx_1", headers={"X-Tenant-Id": "acme"}
    )
    assert acme.json()["data"]["psp"] == "stripe"


async def test_invalid_records_are_422_naming_each_field(client: httpx.AsyncClient) -> None:
    body = {
        "dataset": "other",
        "records": [
            {"key": "a", "data": {"x": 1}},
            {"key": "b", "data": None},
            {"key": "a", "data": 2},
            {"key": "c", "data": {"deep": 1}},
        ],
    }
    resp = await put(client, "transactions", body)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["type"] == "urn:cadenza:problem:invalid-request"
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert set(fields) == {"dataset", "records[1].data", "records[2].key"}
    assert "duplicate key 'a' (first at records[0].key)" in fields["records[2].key"]
    assert "'other'" in fields["dataset"]

    shape = await put(client, "transactions", {"records": [{"key": "", "data": 1}, {"data": 1}]})
    assert shape.status_code == 422
    assert {(e["field"], e["code"]) for e in shape.json()["errors"]} == {
        ("records[0].key", "invalid_field"),
        ("records[1].key", "missing_field"),
    }
    unknown = await put(client, "transactions", {"records": [], "rows": []})
    assert [(e["field"], e["code"]) for e in unknown.json()["errors"]] == [
        ("rows", "unknown_field")
    ]
    not_a_mapping = await put(client, "transactions", [1, 2])
    assert not_a_mapping.status_code == 422
    assert not_a_mapping.json()["errors"][0]["field"] == "records"
    # Nothing was written by the refused requests.
    assert (await client.get("/v1/datasets")).json()["items"] == []


async def test_limits_and_bad_documents(client: httpx.AsyncClient) -> None:
    big = {"records": [{"key": "k", "data": {"blob": "x" * 70_000}}]}
    resp = await put(client, "transactions", big)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "records[0].data"
    assert "limit" in resp.json()["errors"][0]["message"]

    many = {"records": [{"key": str(i), "data": 1} for i in range(10_001)]}
    resp = await put(client, "transactions", many)
    assert resp.status_code in (413, 422)  # the body limit or the record count, whichever first

    assert (await put(client, "transactions", "records: [")).status_code == 400
    bad_type = await client.put(
        "/v1/datasets/transactions/records", content=b"x", headers={"Content-Type": "text/csv"}
    )
    assert bad_type.status_code == 415
    bad_name = await put(client, "Bad Name!", TRANSACTIONS)
    assert bad_name.status_code == 422


async def test_many_records_in_one_request(client: httpx.AsyncClient) -> None:
    """More rows than one INSERT statement carries: chunked, and a second load is idempotent."""
    body = {"records": [{"key": f"k{i}", "data": {"i": i}} for i in range(1_200)]}
    for _ in range(2):
        resp = await put(client, "bulk", body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["records"] == 1_200
    assert (await client.get("/v1/datasets/bulk/records/k1199")).json()["data"] == {"i": 1199}


async def test_non_json_numbers_are_refused_naming_the_path(client: httpx.AsyncClient) -> None:
    body = b'{"records": [{"key": "a", "data": {"rates": [1.0, NaN]}}]}'
    resp = await client.put(
        "/v1/datasets/fx/records", content=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "records[0].data.rates[1]"


async def test_openapi_documents_the_records_body(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/datasets/{dataset}/records"]["put"]["requestBody"]["content"]
    assert set(body) >= {"application/json", "application/yaml"}
    assert "$defs" not in json.dumps(body)  # every reference must resolve in the document
    assert body["application/json"]["schema"]["required"] == ["records"]
