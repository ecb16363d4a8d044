"""POST/GET /v1/workflows: registration, immutable versions, formats, listing."""

from __future__ import annotations

import asyncio
import json

import httpx

REACT_FLOW = {
    "name": "canvas",
    "nodes": [
        {
            "id": "fetch",
            "position": {"x": 0, "y": 0},
            "data": {"label": "Fetch", "tool": "transform", "with": {"v": 1}},
        },
        {
            "id": "n2",
            "data": {
                "id": "parse",
                "tool": "transform",
                "with": {"body": "${{ tasks.fetch.output.v }}"},
            },
        },
    ],
    "edges": [{"source": "fetch", "target": "n2"}],
    "viewport": {"x": 0, "y": 0, "zoom": 1},
}


async def test_registering_a_name_again_creates_a_new_immutable_version(
    client: httpx.AsyncClient, register, greet_yaml: str
) -> None:
    first = await register(greet_yaml)
    assert first["name"] == "greet"
    assert first["version"] == 1
    assert first["spec"]["tasks"][0]["id"] == "hello"
    second = await register(greet_yaml.replace("Say hello.", "Say hello again."))
    assert second["version"] == 2

    latest = (await client.get("/v1/workflows/greet")).json()
    assert latest["version"] == 2
    assert latest["spec"]["description"] == "Say hello again."
    v1 = (await client.get("/v1/workflows/greet/versions/1")).json()
    assert v1["spec"]["description"] == "Say hello."  # version 1 is unchanged
    versions = (await client.get("/v1/workflows/greet/versions")).json()["items"]
    assert [v["version"] for v in versions] == [2, 1]


async def test_location_header_points_at_the_new_version(
    client: httpx.AsyncClient, register, greet_yaml: str
) -> None:
    await register(greet_yaml)
    resp = await client.post(
        "/v1/workflows", content=greet_yaml, headers={"Content-Type": "text/yaml"}
    )
    assert resp.status_code == 201
    assert resp.headers["location"] == "/v1/workflows/greet/versions/2"
    assert (await client.get(resp.headers["location"])).json()["version"] == 2


async def test_concurrent_registrations_get_distinct_consecutive_versions(
    client: httpx.AsyncClient, greet_yaml: str
) -> None:
    async def post(i: int) -> httpx.Response:
        return await client.post(
            "/v1/workflows",
            content=greet_yaml.replace("Say hello.", f"variant {i}"),
            headers={"Content-Type": "application/yaml"},
        )

    responses = await asyncio.gather(*(post(i) for i in range(6)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == [1, 2, 3, 4, 5, 6]


async def test_json_spec_and_react_flow_export_are_accepted(client: httpx.AsyncClient) -> None:
    native = {"name": "native", "tasks": [{"id": "a", "tool": "transform"}]}
    resp = await client.post("/v1/workflows", json=native)
    assert resp.status_code == 201, resp.text
    resp = await client.post("/v1/workflows", json=REACT_FLOW)
    assert resp.status_code == 201, resp.text
    spec = resp.json()["spec"]
    assert [t["id"] for t in spec["tasks"]] == ["fetch", "parse"]
    assert spec["tasks"][1]["needs"] == ["fetch"]


async def test_without_content_type_the_format_is_sniffed(client: httpx.AsyncClient) -> None:
    doc = json.dumps({"name": "sniffed", "tasks": [{"id": "a", "tool": "noop"}]})
    resp = await client.post("/v1/workflows", content=doc)  # httpx sends no Content-Type
    assert resp.status_code == 201, resp.text


async def test_list_shows_the_latest_version_of_each_name_with_pagination(
    client: httpx.AsyncClient, register
) -> None:
    for name in ["charlie", "alpha", "bravo", "delta", "echo"]:
        await register(f"name: {name}\ntasks: [{{id: a, tool: noop}}]\n")
    await register("name: alpha\ndescription: two\ntasks: [{id: a, tool: noop}]\n")
    seen = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/workflows", params=params)).json()
        seen.extend((w["name"], w["version"]) for w in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [("alpha", 2), ("bravo", 1), ("charlie", 1), ("delta", 1), ("echo", 1)]


async def test_unknown_workflow_and_version_are_404_problems(
    client: httpx.AsyncClient, register
) -> None:
    await register()
    for path in [
        "/v1/workflows/nope",
        "/v1/workflows/greet/versions/9",
        "/v1/workflows/nope/versions",
    ]:
        resp = await client.get(path)
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/problem+json"
        body = resp.json()
        assert body["type"] == "urn:cadenza:problem:workflow-not-found"
        assert body["instance"] == path


async def test_workflows_are_per_tenant(client: httpx.AsyncClient, register) -> None:
    await register(**{"X-Tenant-Id": "acme"})
    assert (await client.get("/v1/workflows/greet")).status_code == 404
    resp = await client.get("/v1/workflows/greet", headers={"X-Tenant-Id": "acme"})
    assert resp.status_code == 200
    assert (await register())["version"] == 1  # numbering is per tenant too


async def test_a_version_beyond_int32_is_a_422_not_a_database_error(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/v1/workflows/hello/versions/2147483648", "/v1/agents/a/versions/2147483648"):
        resp = await client.get(path)
        assert resp.status_code == 422, resp.text
        assert resp.json()["errors"][0]["field"] == "path.version"
    assert (await client.get("/v1/workflows/hello/versions/2147483647")).status_code == 404


async def test_a_task_approval_rule_is_checked_at_registration(client: httpx.AsyncClient) -> None:
    spec = {
        "name": "wire",
        "tasks": [
            {
                "id": "pay",
                "tool": "http_request",
                "with": {"url": "https://bank.example/pay", "method": "POST"},
                "approval": {"rules": [{"tool": "http_request", "when": "args.amount >"}]},
            }
        ],
    }
    bad = await client.post("/v1/workflows", json=spec)
    assert bad.status_code == 422, bad.text
    fields = [e["field"] for e in bad.json()["errors"]]
    assert "tasks[0].approval.rules[0].when" in fields
    spec["tasks"][0]["approval"] = {"rules": [{"tool": "http_request", "methods": ["GET"]}]}  # type: ignore[index]
    good = await client.post("/v1/workflows", json=spec)
    assert good.status_code == 201, good.text
    assert good.json()["spec"]["tasks"][0]["approval"]["rules"] == [
        {"tool": "http_request", "methods": ["GET"]}
    ]
