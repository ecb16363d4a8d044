"""Usage roll-ups from llm_calls and tool_calls rows: per task, run, agent and model on
GET /v1/runs/{id}, and per tenant on GET /v1/usage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cadenza_runtime import Resources
from cadenza_state import LLMCallRecord, TaskRecord, ToolCallRecord

OLD = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime.now(UTC)
LOCAL = ("local", "smollm2-135m")
OPENAI = ("openai", "gpt-4o-mini")


@dataclass(frozen=True)
class Turn:
    node: str
    attempt: int
    agent: str
    model: tuple[str, str]
    tokens: tuple[int, int]
    cost: float = 0.0
    status: str = "ok"
    at: datetime = NOW


@dataclass(frozen=True)
class Call:
    node: str
    agent: str
    status: str = "ok"
    at: datetime = NOW


def agent_doc(name: str) -> dict[str, Any]:
    return {"name": name, "system_prompt": "Be brief.", "model": "local:smollm2-135m"}


async def start_run(client: httpx.AsyncClient, tenant: str = "default") -> str:
    headers = {"X-Tenant-Id": tenant}
    for name in ["classifier", "investigator"]:
        resp = await client.post("/v1/agents", json=agent_doc(name), headers=headers)
        assert resp.status_code == 201, resp.text
    spec = {
        "name": "triage",
        "tasks": [
            {"id": "classify", "agent": "classifier", "prompt": "p"},
            {"id": "investigate", "agent": "investigator", "prompt": "p", "needs": ["classify"]},
            {"id": "report", "tool": "noop", "needs": ["investigate"]},
        ],
    }
    resp = await client.post("/v1/runs", json={"spec": spec}, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def record(
    resources: Resources, run_id: str, turns: list[Turn], calls: list[Call], tenant: str = "default"
) -> None:
    """Insert the run's task rows and the given LLM turns and tool calls, as workers do."""
    nodes = ["classify", "investigate", "report"]
    async with resources.sessions() as session, session.begin():
        for node in nodes:
            session.add(
                TaskRecord(id=f"{run_id}:{node}", run_id=run_id, node_id=node, max_attempts=3)
            )
        await session.flush()  # tasks first: the call rows reference them
        for i, t in enumerate(turns):
            session.add(
                LLMCallRecord(
                    tenant_id=tenant,
                    run_id=run_id,
                    task_id=f"{run_id}:{t.node}",
                    attempt=t.attempt,
                    turn=i,
                    agent=t.agent,
                    agent_version=1,
                    provider=t.model[0],
                    model=t.model[1],
                    request={"messages": []},
                    response={"content": "x"},
                    input_tokens=t.tokens[0],
                    output_tokens=t.tokens[1],
                    cost_usd=t.cost,
                    latency_ms=5.0,
                    status=t.status,
                    created_at=t.at,
                )
            )
        for i, c in enumerate(calls):
            session.add(
                ToolCallRecord(
                    tenant_id=tenant,
                    run_id=run_id,
                    task_id=f"{run_id}:{c.node}",
                    attempt=1,
                    turn=1,
                    call_index=i,
                    agent=c.agent,
                    tool="get_transaction",
                    arguments={"id": i},
                    result={"ok": True},
                    status=c.status,
                    latency_ms=1.0,
                    created_at=c.at,
                )
            )


TURNS = [
    Turn("classify", 1, "classifier", LOCAL, (100, 20)),
    Turn("classify", 1, "classifier", LOCAL, (100, 20)),
    Turn("classify", 2, "classifier", LOCAL, (50, 0), status="error"),  # failed turns count
    Turn("investigate", 1, "investigator", OPENAI, (1000, 200), 0.0015),
    Turn("investigate", 1, "investigator", OPENAI, (1000, 200), 0.0015),
    Turn("investigate", 2, "tier2", OPENAI, (300, 100), 0.0005),  # after a handoff
]
CALLS = [
    Call("investigate", "investigator"),
    Call("investigate", "investigator"),
    Call("investigate", "investigator", status="refused"),
    Call("investigate", "tier2", status="timeout"),
]


def totals(
    llm: int, tokens: tuple[int, int], cost: float, tools: int = 0, errors: int = 0
) -> dict[str, Any]:
    return {
        "llm_calls": llm,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "total_tokens": sum(tokens),
        "cost_usd": pytest.approx(cost),
        "tool_calls": tools,
        "tool_errors": errors,
    }


def model_totals(llm: int, tokens: tuple[int, int], cost: float) -> dict[str, Any]:
    out = totals(llm, tokens, cost)
    del out["tool_calls"], out["tool_errors"]
    return out


async def test_run_usage_rolls_up_per_task_agent_model_and_run(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    run_id = await start_run(client)
    await record(resources, run_id, TURNS, CALLS)
    # Another run's rows must not leak into this one.
    other = await start_run(client)
    await record(resources, other, [Turn("classify", 1, "classifier", LOCAL, (7, 7))], [])

    resp = await client.get(f"/v1/runs/{run_id}")
    assert resp.status_code == 200, resp.text
    run = resp.json()
    tasks = {t["node_id"]: t["usage"] for t in run["tasks"]}
    assert tasks["classify"] == totals(3, (250, 40), 0.0)
    assert tasks["investigate"] == totals(3, (2300, 500), 0.0035, tools=4, errors=2)
    assert tasks["report"] == totals(0, (0, 0), 0.0)  # a tool task: zeros, not null
    usage = run["usage"]
    assert usage["total"] == totals(6, (2550, 540), 0.0035, tools=4, errors=2)
    assert usage["by_agent"] == {
        "classifier": totals(3, (250, 40), 0.0),
        "investigator": totals(2, (2000, 400), 0.003, tools=3, errors=1),
        "tier2": totals(1, (300, 100), 0.0005, tools=1, errors=1),
    }
    assert usage["by_model"] == {
        "local:smollm2-135m": model_totals(3, (250, 40), 0.0),
        "openai:gpt-4o-mini": model_totals(3, (2300, 500), 0.0035),
    }
    assert run["agents"] == {"classifier": 1, "investigator": 1}


async def test_a_run_without_calls_has_zero_usage(client: httpx.AsyncClient) -> None:
    run_id = await start_run(client)
    run = (await client.get(f"/v1/runs/{run_id}")).json()
    assert run["usage"] == {"total": totals(0, (0, 0), 0.0), "by_agent": {}, "by_model": {}}


async def test_tenant_usage_per_agent_and_model_with_a_time_window(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    first = await start_run(client)
    await record(resources, first, TURNS, CALLS)
    second = await start_run(client)
    await record(
        resources,
        second,
        [Turn("classify", 1, "classifier", LOCAL, (10, 5), at=OLD)],
        [Call("investigate", "investigator", at=OLD)],
    )
    elsewhere = await start_run(client, tenant="acme")
    await record(
        resources,
        elsewhere,
        [Turn("classify", 1, "classifier", OPENAI, (9999, 1), 9.0)],
        [Call("investigate", "investigator")],
        tenant="acme",
    )

    resp = await client.get("/v1/usage")
    assert resp.status_code == 200, resp.text
    usage = resp.json()
    assert (usage["since"], usage["until"]) == (None, None)
    assert usage["total"] == totals(7, (2560, 545), 0.0035, tools=5, errors=2)
    assert usage["by_agent"]["classifier"] == totals(4, (260, 45), 0.0)
    assert usage["by_agent"]["investigator"] == totals(2, (2000, 400), 0.003, tools=4, errors=1)
    assert usage["by_model"]["openai:gpt-4o-mini"] == model_totals(3, (2300, 500), 0.0035)

    since = (OLD + timedelta(days=1)).isoformat()
    recent = (await client.get("/v1/usage", params={"since": since})).json()
    assert recent["total"] == totals(6, (2550, 540), 0.0035, tools=4, errors=2)
    assert recent["since"].startswith("2026-01-02T00:00:00")
    old = (await client.get("/v1/usage", params={"until": "2026-01-02T00:00:00"})).json()
    assert old["total"] == totals(1, (10, 5), 0.0, tools=1)  # a zone-less time is UTC
    assert old["by_model"] == {"local:smollm2-135m": model_totals(1, (10, 5), 0.0)}

    acme = (await client.get("/v1/usage", headers={"X-Tenant-Id": "acme"})).json()
    assert acme["total"] == totals(1, (9999, 1), 9.0, tools=1)


async def test_usage_window_must_be_ordered(client: httpx.AsyncClient) -> None:
    resp = await client.get(
        "/v1/usage", params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert resp.status_code == 422
    (error,) = resp.json()["errors"]
    assert error["field"] == "query.until"
    resp = await client.get("/v1/usage", params={"since": "yesterday"})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "query.since"
