"""GET /v1/runs/{id}/calls and /v1/runs/{id}/tasks/{task}/calls: every LLM call, agent tool
call and tool task call in recorded order, across pages; bodies the worker claim-checked
are read back from the object store; another tenant reads nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cadenza_runtime import Resources
from cadenza_state import LLMCallRecord, RunRecord, TaskRecord, ToolCallRecord
from cadenza_worker.agents.accounting import Accounting, CallSite
from sqlalchemy import select

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
SPEC = {
    "name": "inspect",
    "inputs": {"q": {"type": "integer", "default": 1}},
    "tasks": [
        {"id": "ask", "agent": "helper", "prompt": "q=${{ inputs.q }}"},
        {"id": "fetch", "tool": "transform", "needs": ["ask"], "with": {"q": "${{ inputs.q }}"}},
    ],
}


async def start_run(client: httpx.AsyncClient) -> str:
    agent = {"name": "helper", "system_prompt": "Be brief.", "model": "local:smollm2-135m"}
    resp = await client.post("/v1/agents", json=agent)
    assert resp.status_code == 201, resp.text
    resp = await client.post("/v1/runs", json={"spec": SPEC})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def record_run(resources: Resources, run_id: str) -> None:
    """What the orchestrator and a worker leave behind: two task rows, three LLM turns and
    two tool calls of the agent (interleaved in time), the tool task's own call last."""
    async with resources.sessions() as session, session.begin():
        session.add_all(
            [
                TaskRecord(
                    id=f"{run_id}.ask", run_id=run_id, node_id="ask", status="succeeded",
                    attempt=1, max_attempts=3, output="done", started_at=at(0),
                    finished_at=at(5),
                ),
                TaskRecord(
                    id=f"{run_id}.fetch", run_id=run_id, node_id="fetch", status="succeeded",
                    attempt=1, max_attempts=3, input={"q": 1}, output={"q": 1},
                    started_at=at(6), finished_at=at(7),
                ),
            ]
        )  # fmt: skip
        await session.flush()
        for turn, second in enumerate([1, 3, 5]):
            session.add(
                LLMCallRecord(
                    tenant_id="default", run_id=run_id, task_id=f"{run_id}.ask", attempt=1,
                    turn=turn, agent="helper", agent_version=1, provider="local",
                    model="smollm2-135m",
                    request={"messages": [{"role": "user", "content": f"turn {turn}"}]},
                    response={"content": f"answer {turn}"}, input_tokens=10, output_tokens=2,
                    cost_usd=0.001, latency_ms=20.0, status="ok", created_at=at(second),
                )
            )  # fmt: skip
        for index, second in enumerate([2, 4]):
            session.add(
                ToolCallRecord(
                    tenant_id="default", run_id=run_id, task_id=f"{run_id}.ask", attempt=1,
                    turn=index, call_index=index, agent="helper", tool="get_transaction",
                    arguments={"id": index}, result={"found": index}, status="ok",
                    latency_ms=3.0, created_at=at(second),
                )
            )  # fmt: skip


async def pages(client: httpx.AsyncClient, path: str, limit: int, **headers: str) -> list[Any]:
    items: list[Any] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(20):
        resp = await client.get(path, params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        params["cursor"] = page["next_cursor"]
    raise AssertionError("pagination did not end")


async def test_calls_come_in_recorded_order_across_pages(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    run_id = await start_run(client)
    await record_run(resources, run_id)
    calls = await pages(client, f"/v1/runs/{run_id}/calls", limit=2)
    assert [(c["kind"], c["node_id"]) for c in calls] == [
        ("llm", "ask"),
        ("tool", "ask"),
        ("llm", "ask"),
        ("tool", "ask"),
        ("llm", "ask"),
        ("tool", "fetch"),
    ]
    first = calls[0]
    assert first["messages"] == [{"role": "user", "content": "turn 0"}]
    assert first["response"] == {"content": "answer 0"}
    assert (first["provider"], first["model"], first["input_tokens"]) == (
        "local",
        "smollm2-135m",
        10,
    )
    assert calls[1]["arguments"] == {"id": 0}
    assert calls[1]["result"] == {"found": 0}
    tool_task = calls[-1]
    assert tool_task["tool"] == "transform"
    assert tool_task["arguments"] == {"q": 1}
    assert tool_task["result"] == {"q": 1}
    assert tool_task["latency_ms"] == pytest.approx(1000.0)
    # One page of everything gives the same order as the pages did.
    assert calls == await pages(client, f"/v1/runs/{run_id}/calls", limit=100)

    only_fetch = await pages(client, f"/v1/runs/{run_id}/tasks/fetch/calls", limit=5)
    assert [c["id"] for c in only_fetch] == [f"task:{run_id}.fetch"]
    only_ask = await pages(client, f"/v1/runs/{run_id}/tasks/ask/calls", limit=5)
    assert len(only_ask) == 5
    assert (await client.get(f"/v1/runs/{run_id}/tasks/nope/calls")).status_code == 404
    bad = await client.get(f"/v1/runs/{run_id}/calls", params={"cursor": "garbage!"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "query.cursor"

    timeline = (await client.get(f"/v1/runs/{run_id}/timeline")).json()
    assert timeline["calls_url"] == f"/v1/runs/{run_id}/calls"
    assert {t["calls_url"] for t in timeline["tasks"]} == {
        f"/v1/runs/{run_id}/tasks/ask/calls",
        f"/v1/runs/{run_id}/tasks/fetch/calls",
    }


async def test_large_bodies_go_through_the_claim_check(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    run_id = await start_run(client)
    await record_run(resources, run_id)
    accounting = Accounting(resources.sessions, resources.objects, claim_check_bytes=1024)
    site = CallSite("default", run_id, f"{run_id}.ask", 2, "helper", 1)
    big = "x" * 5000
    await accounting.llm_call(
        site, turn=0, provider="local", model="smollm2-135m",
        request={"messages": [{"role": "user", "content": big}]}, response={"content": "ok"},
        tool_calls=None, input_tokens=1, output_tokens=1, cost_usd=0.0, latency_ms=1.0,
        status="ok", error=None, started_at=datetime.now(UTC),
    )  # fmt: skip
    await accounting.tool_call(
        site, turn=0, call_index=0, call_id=None, tool="search", arguments={"q": "x"},
        result={"hits": [big]}, status="ok", error=None, latency_ms=1.0,
        started_at=datetime.now(UTC),
    )  # fmt: skip
    async with resources.sessions() as session:
        row = await session.scalar(
            select(LLMCallRecord).where(LLMCallRecord.run_id == run_id, LLMCallRecord.attempt == 2)
        )
        assert row is not None
        assert set(row.request) == {"claim_check", "bytes"}  # the row holds only the marker
    calls = await pages(client, f"/v1/runs/{run_id}/tasks/ask/calls", limit=100)
    llm = next(c for c in calls if c["kind"] == "llm" and c["attempt"] == 2)
    assert llm["messages"][0]["content"] == big
    tool = next(c for c in calls if c["kind"] == "tool" and c["attempt"] == 2)
    assert tool["result"] == {"hits": [big]}


async def test_another_tenant_reads_nothing(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    run_id = await start_run(client)
    await record_run(resources, run_id)
    async with resources.sessions() as session, session.begin():
        run = await session.get(RunRecord, run_id)
        assert run is not None
        run.status = "succeeded"
    other = {"X-Tenant-Id": "tenant-b"}
    for path in [
        f"/v1/runs/{run_id}/calls",
        f"/v1/runs/{run_id}/tasks/ask/calls",
        f"/v1/runs/{run_id}/diff/{run_id}",
    ]:
        resp = await client.get(path, headers=other)
        assert resp.status_code == 404, path
        assert resp.json()["type"].endswith("run-not-found")
    for path, body in [
        (f"/v1/runs/{run_id}/rerun", {"from": ["ask"]}),
        (f"/v1/runs/{run_id}/fork", {}),
    ]:
        resp = await client.post(path, json=body, headers=other)
        assert resp.status_code == 404, path
    # The owner reads them.
    assert (await client.get(f"/v1/runs/{run_id}/calls")).status_code == 200


async def test_rerun_and_fork_refuse_bad_requests_naming_the_field(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    run_id = await start_run(client)
    resp = await client.post(f"/v1/runs/{run_id}/rerun", json={})
    assert resp.status_code == 409  # still pending
    assert resp.json()["type"].endswith("run-not-finished")
    await record_run(resources, run_id)
    async with resources.sessions() as session, session.begin():
        run = await session.get(RunRecord, run_id)
        assert run is not None
        run.status = "succeeded"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("rerun", {}, "from"),  # nothing failed: name the tasks
        ("rerun", {"from": ["nope"]}, "from[0]"),
        ("rerun", {"inputs": {"q": "many"}}, "inputs.q"),
        ("fork", {"tasks": {"nope": {"model": "local:x"}}}, "tasks.nope"),
        ("fork", {"tasks": {"fetch": {"system_prompt": "hi"}}}, "tasks.fetch.system_prompt"),
        ("fork", {"tasks": {"ask": {"agent_version": 9}}}, "tasks.ask.agent_version"),
        # Past the 32-bit version column: refused by name, never a 500 from the lookup.
        ("fork", {"tasks": {"ask": {"agent_version": 2**40}}}, "tasks.ask.agent_version"),
    ]
    for action, body, field in cases:
        resp = await client.post(f"/v1/runs/{run_id}/{action}", json=body)
        assert resp.status_code == 422, (action, body, resp.text)
        assert field in [e["field"] for e in resp.json()["errors"]], resp.text
