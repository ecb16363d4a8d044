"""/v1/budgets (tenant limits per day / month, scope admin) and a run request's budget."""

from __future__ import annotations

import httpx
from cadenza_runtime import Resources
from cadenza_state import LLMCallRecord, RunRecord, TaskRecord
from support.auth import issue_key

SPEC = {"name": "b", "tasks": [{"id": "a", "tool": "transform"}]}


async def test_a_tenant_budget_is_set_listed_with_spend_and_removed(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    put = await client.put("/v1/budgets/day", json={"max_tokens": 1000, "max_usd": 2.5})
    assert put.status_code == 200, put.text
    assert put.json()["max_tokens"] == 1000
    assert put.json()["spent_tokens"] == 0
    # Spend recorded by workers today counts against it.
    run = await client.post("/v1/runs", json={"spec": SPEC})
    run_id = run.json()["id"]
    async with resources.sessions() as session, session.begin():
        session.add(
            TaskRecord(
                id=f"{run_id}:x", run_id=run_id, node_id="x", status="succeeded", max_attempts=1
            )
        )
        await session.flush()
        session.add(
            LLMCallRecord(
                tenant_id="default",
                run_id=run_id,
                task_id=f"{run_id}:x",
                attempt=1,
                turn=0,
                agent="a",
                provider="p",
                model="m",
                request={},
                input_tokens=30,
                output_tokens=14,
                cost_usd=0.25,
                status="ok",
            )
        )
    listed = (await client.get("/v1/budgets")).json()["items"]
    assert [(b["period"], b["spent_tokens"], b["spent_usd"]) for b in listed] == [("day", 44, 0.25)]
    usage = (await client.get("/v1/usage")).json()
    assert usage["by_workflow"]["b"]["total_tokens"] == 44
    assert [(b["period"], b["max_tokens"], b["spent_tokens"]) for b in usage["budgets"]] == [
        ("day", 1000, 44)
    ]
    other = await client.get("/v1/budgets", headers={"X-Tenant-Id": "globex"})
    assert other.json()["items"] == []  # the tenant is the credential's
    assert (await client.delete("/v1/budgets/day")).status_code == 204
    assert (await client.delete("/v1/budgets/day")).status_code == 404


async def test_bad_budgets_are_problems_naming_the_field(client: httpx.AsyncClient) -> None:
    bad = await client.put("/v1/budgets/day", json={"max_tokens": 0})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert "max_tokens" in bad.text
    assert (await client.put("/v1/budgets/week", json={"max_tokens": 5})).status_code == 422


async def test_setting_a_budget_needs_the_admin_scope(app: object, resources: Resources) -> None:
    token = await issue_key(resources, "acme", scopes=["runs:read"])
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        assert (await c.put("/v1/budgets/day", json={"max_tokens": 5})).status_code == 403


async def test_a_run_request_carries_its_budget(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    created = await client.post(
        "/v1/runs", json={"spec": SPEC, "budget": {"max_tokens": 500, "max_usd": 0.1}}
    )
    assert created.status_code == 201, created.text
    async with resources.sessions() as session:
        run = await session.get(RunRecord, created.json()["id"])
    assert run is not None
    assert run.budget == {"max_tokens": 500, "max_usd": 0.1, "on_exceeded": "stop"}
    # The workflow's own budget and the request's: the tighter of each limit applies.
    spec = {**SPEC, "budget": {"max_tokens": 300, "max_usd": 1.0}}
    both = await client.post("/v1/runs", json={"spec": spec, "budget": {"max_usd": 0.2}})
    assert both.status_code == 201, both.text
    shown = (await client.get(f"/v1/runs/{both.json()['id']}")).json()
    assert (shown["budget"]["max_tokens"], shown["budget"]["max_usd"]) == (300, 0.2)
    assert shown["usage"]["total"]["total_tokens"] == 0
    bad = await client.post("/v1/runs", json={"spec": SPEC, "budget": {"max_usd": -1}})
    assert bad.status_code == 422
    assert "budget.max_usd" in bad.text


async def _spend(resources: Resources, run_id: str, tokens: int, cost: float, calls: int) -> None:
    async with resources.sessions() as session, session.begin():
        session.add(
            TaskRecord(
                id=f"{run_id}:x", run_id=run_id, node_id="x", status="succeeded", max_attempts=1
            )
        )
        await session.flush()
        for turn in range(calls):
            session.add(
                LLMCallRecord(
                    tenant_id="default",
                    run_id=run_id,
                    task_id=f"{run_id}:x",
                    attempt=1,
                    turn=turn,
                    agent="a",
                    provider="p",
                    model="m",
                    request={},
                    input_tokens=tokens,
                    output_tokens=0,
                    cost_usd=cost,
                    status="ok",
                )
            )


async def test_usage_by_run_lists_the_most_expensive_runs_with_their_limits(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    other_spec = {**SPEC, "name": "other"}
    cheap = (await client.post("/v1/runs", json={"spec": SPEC})).json()["id"]
    dear = (await client.post("/v1/runs", json={"spec": SPEC, "budget": {"max_usd": 5.0}})).json()[
        "id"
    ]
    middle = (await client.post("/v1/runs", json={"spec": other_spec})).json()["id"]
    await _spend(resources, cheap, 10, 0.01, 1)
    await _spend(resources, dear, 100, 1.5, 2)
    await _spend(resources, middle, 50, 0.5, 1)

    page = await client.get("/v1/usage/runs")
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    assert [i["run_id"] for i in items] == [dear, middle, cheap]
    top = items[0]
    assert (top["llm_calls"], top["total_tokens"], top["cost_usd"]) == (2, 200, 3.0)
    assert (top["max_usd"], top["max_tokens"], top["workflow_name"]) == (5.0, None, "b")
    assert top["status"] == "pending"
    limited = (await client.get("/v1/usage/runs", params={"limit": 1})).json()["items"]
    assert [i["run_id"] for i in limited] == [dear]
    only = (await client.get("/v1/usage/runs", params={"workflow": "other"})).json()["items"]
    assert [i["run_id"] for i in only] == [middle]
    other = await client.get("/v1/usage/runs", headers={"X-Tenant-Id": "globex"})
    assert other.json()["items"] == []  # the tenant is the credential's
    bad = await client.get("/v1/usage/runs", params={"limit": 0})
    assert bad.status_code == 422
    assert "limit" in bad.text
