"""Regression tests of the API hardening list (issue 11): what the sandbox would refuse at
run time is refused at registration, naming the task and the field."""

from __future__ import annotations

import httpx
import pytest

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


@unit_only
@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("'%s' % inputs", "'%' string formatting"),
        ("f'{1:{10**9}}'", "format widths are limited"),
        ("f'{1:5000}'", "format widths are limited"),
    ],
)
async def test_a_when_the_sandbox_can_never_run_is_refused_at_registration(
    client: httpx.AsyncClient, when: str, message: str
) -> None:
    spec = {
        "name": "never",
        "tasks": [{"id": "a", "tool": "transform", "with": {"x": 1}, "when": when}],
    }
    resp = await client.post("/v1/workflows", json=spec)
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert any(e["task"] == "a" and "when" in e["field"] for e in errors), errors
    assert any(message in e["message"] for e in errors), errors


@unit_only
async def test_a_when_with_data_driven_formatting_still_registers(
    client: httpx.AsyncClient,
) -> None:
    spec = {
        "name": "fine",
        "inputs": {"w": {"type": "integer", "default": 3}},
        "tasks": [
            {
                "id": "a",
                "tool": "transform",
                "with": {"x": 1},
                "when": "f'{1:>{inputs.w}}' != '' and 10 % 3 == 1",
            }
        ],
    }
    resp = await client.post("/v1/workflows", json=spec)
    assert resp.status_code == 201, resp.text


@unit_only
async def test_a_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    options = await client.options("/v1/runs")
    assert options.status_code == 405
    assert options.headers["allow"] == "GET, HEAD, POST"
    deleted = await client.delete("/v1/workflows")
    assert deleted.headers["allow"] == "GET, HEAD, POST"
    assert (await client.request("BREW", "/v1/runs/abc")).headers["allow"] == "GET, HEAD"


@unit_only
@pytest.mark.parametrize("value", [1.5, [False], [1.5], {"a": 1}])
async def test_search_filters_take_exact_values_only(
    client: httpx.AsyncClient, value: object
) -> None:
    assert (await client.post("/v1/collections", json={"name": "c1"})).status_code == 201
    resp = await client.post(
        "/v1/collections/c1/search", json={"query": "x", "filters": {"lang": value}}
    )
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["type"] == "urn:cadenza:problem:invalid-request"
    assert body["errors"], body
    assert all(e["field"].startswith("filters.lang") for e in body["errors"]), body["errors"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        (
            "POST",
            "/v1/agents",
            {"json": {"name": "a", "system_prompt": "x\u0000y", "model": "local:m"}},
            "system_prompt",
        ),
        (
            "POST",
            "/v1/runs",
            {"json": {"workflow": "greet", "inputs": {"who": "a\u0000b"}}},
            "inputs.who",
        ),
        (
            "PUT",
            "/v1/datasets/d/records",
            {"json": {"records": [{"key": "k", "data": {"a\u0000": 1}}]}},
            "records[0].data.a\u0000",
        ),
        (
            "POST",
            "/v1/workflows",
            {
                "content": 'name: w\ntasks: [{id: a, tool: transform, with: {x: "\\0"}}]\n',
                "headers": {"content-type": "application/yaml"},
            },
            "tasks[0].with.x",
        ),
    ],
)
async def test_a_nul_character_anywhere_is_a_422_naming_the_field_on_both_stacks(
    client: httpx.AsyncClient,
    register: object,
    method: str,
    path: str,
    kwargs: dict[str, object],
    field: str,
) -> None:
    resp = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [(field, "nul_character")]
