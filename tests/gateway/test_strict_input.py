"""No loose coercion (issue 11): a boolean is not a number, a decimal is not an integer, a
Unix timestamp is not a date-time. Each is a 422 problem whose `errors[]` names the field,
where pydantic's lax mode used to store `"max_usd": false` as 0.0 and read `until=0.5` as
1970-01-01T00:00:00.5Z. Integers still count as decimals (`timeout_s: 30`)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


def _fields(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["type"] == "urn:cadenza:problem:invalid-request", body
    return [e["field"] for e in body["errors"]]


@unit_only
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/usage?until=0.5", "query.until"),
        ("/v1/usage?since=1700000000", "query.since"),
        ("/v1/runs?limit=5.0", "query.limit"),
        ("/v1/runs?limit=5_0", "query.limit"),
        ("/v1/workflows?limit=%205", "query.limit"),
        ("/v1/workflows/greet/versions/1.0", "path.version"),
        ("/v1/runs/r1/events?after=1.5", "query.after"),
    ],
)
async def test_query_and_path_parameters_take_their_canonical_text_only(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    assert _fields(await client.get(path)) == [field]


@unit_only
async def test_canonical_parameters_are_still_read(client: httpx.AsyncClient) -> None:
    ok = await client.get("/v1/usage?since=2026-01-01T00:00:00Z&until=2026-12-31T00:00:00%2B01:00")
    assert ok.status_code == 200, ok.text
    assert (await client.get("/v1/runs?limit=5")).status_code == 200
    put = await client.put(
        "/v1/datasets/d/records?replace=true", json={"records": [{"key": "k", "data": 1}]}
    )
    assert put.status_code == 200, put.text
    refused = await client.put(
        "/v1/datasets/d/records?replace=yes", json={"records": [{"key": "k", "data": 1}]}
    )
    assert _fields(refused) == ["query.replace"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/budgets/day", {"max_usd": False}, "max_usd"),
        ("PUT", "/v1/budgets/day", {"max_tokens": 10.5}, "max_tokens"),
        (
            "POST",
            "/v1/runs",
            {"workflow": "greet", "budget": {"max_tokens": True}},
            "budget.max_tokens",
        ),
        ("POST", "/v1/api-keys", {"name": "k", "scopes": ["runs:read"], "expires_in_s": True},
         "expires_in_s"),
        ("POST", "/v1/collections/c1/search", {"query": "x", "k": True}, "k"),
    ],
)  # fmt: skip
async def test_a_boolean_or_decimal_for_a_number_is_refused_naming_the_field(
    client: httpx.AsyncClient,
    register: Any,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    await register()
    assert (await client.post("/v1/collections", json={"name": "c1"})).status_code == 201
    fields = _fields(await client.request(method, path, json=body))
    assert fields
    assert all(f.startswith(field) for f in fields), fields


@unit_only
@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"timeout_s": True}, "tasks[0].timeout_s"),
        ({"retry": {"max_attempts": True}}, "tasks[0].retry.max_attempts"),
        ({"retry": {"jitter": 1}}, "tasks[0].retry.jitter"),
        ({"fallback": "yes"}, "tasks[0].fallback"),
        ({"retry": {"max_attempts": 2.5}}, "tasks[0].retry.max_attempts"),
    ],
)
async def test_workflow_specs_take_no_loose_values(
    client: httpx.AsyncClient, task: dict[str, Any], field: str
) -> None:
    spec = {"name": "strict", "tasks": [{"id": "a", "tool": "transform", **task}]}
    resp = await client.post("/v1/workflows", json=spec)
    assert resp.status_code == 422, resp.text
    fields = [e["field"] for e in resp.json()["errors"]]
    assert any(f.startswith(field) for f in fields), fields


@unit_only
async def test_an_integer_still_counts_as_a_decimal(client: httpx.AsyncClient) -> None:
    spec = {"name": "ints", "tasks": [{"id": "a", "tool": "transform", "timeout_s": 30}]}
    assert (await client.post("/v1/workflows", json=spec)).status_code == 201
    put = await client.put("/v1/budgets/day", json={"max_tokens": 10, "max_usd": 2})
    assert put.status_code == 200, put.text
    assert put.json()["max_usd"] == 2.0


@unit_only
async def test_an_integral_number_is_an_integer_as_json_schema_says(
    client: httpx.AsyncClient,
) -> None:
    """JSON Schema (and so the OpenAPI document) counts `3.0` as an integer: accepted."""
    created = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["runs:read"], "expires_in_s": 3600.0}
    )
    assert created.status_code == 201, created.text
    spec = {
        "name": "ints",
        "tasks": [{"id": "a", "tool": "transform", "retry": {"max_attempts": 2.0}}],
    }
    assert (await client.post("/v1/workflows", json=spec)).status_code == 201
    refused = await client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["runs:read"], "expires_in_s": 3600.5}
    )
    assert _fields(refused) == ["expires_in_s"]


@unit_only
async def test_the_openapi_document_states_the_constraints_the_server_enforces(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    text = json.dumps(document)
    # pydantic writes constraints it cannot place as unknown keywords ("ge": 1), which no
    # client or generator reads: every bound must be a JSON Schema keyword.
    assert not re.findall(r'"(?:ge|le|gt|lt)": ', text)
    limit = next(
        p for p in document["paths"]["/v1/runs"]["get"]["parameters"] if p["name"] == "limit"
    )
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    run_create = document["components"]["schemas"]["RunCreate"]
    assert [branch["required"] for branch in run_create["oneOf"]] == [["workflow"], ["spec"]]
