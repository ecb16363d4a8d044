"""Agent versions pinned at run creation (tasks and handoff targets), and agent references
checked when a workflow is registered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest_asyncio
from cadenza_events import PlanRequested, Topic
from cadenza_runtime import Resources
from cadenza_state import RunRecord
from cadenza_workflow import parse_spec
from support import assert_eventually

RegisterAgent = Callable[..., Awaitable[dict[str, Any]]]


def agent_doc(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "system_prompt": f"You are {name}.", "model": "local:m", **fields}


def workflow(*agents: str, **extra: Any) -> dict[str, Any]:
    """A workflow with one agent task per reference (ids a0, a1, …) and a tool task."""
    tasks: list[dict[str, Any]] = [
        {"id": f"a{i}", "agent": ref, "prompt": "Help with ${{ inputs.q }}"}
        for i, ref in enumerate(agents)
    ]
    tasks.append({"id": "done", "tool": "noop", "needs": [t["id"] for t in tasks]})
    return {"name": "triage", "inputs": {"q": {"default": "x"}}, "tasks": tasks, **extra}


@pytest_asyncio.fixture
async def register_agent(client: httpx.AsyncClient) -> RegisterAgent:
    async def post(name: str, **fields: Any) -> dict[str, Any]:
        resp = await client.post("/v1/agents", json=agent_doc(name, **fields))
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    return post


async def stored_spec(resources: Resources, run_id: str) -> dict[str, Any]:
    async with resources.sessions() as session:
        run = await session.get(RunRecord, run_id)
    assert run is not None
    return run.spec


async def start(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/runs", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_a_run_pins_each_agent_task_to_the_latest_version_at_creation(
    client: httpx.AsyncClient,
    resources: Resources,
    register_agent: RegisterAgent,
    events: Callable[[Topic], Awaitable[list[Any]]],
) -> None:
    plans = await events(Topic.PLAN_REQUESTED)
    await register_agent("helper")
    await register_agent("helper", description="second")
    resp = await client.post("/v1/workflows", json=workflow("helper"))
    assert resp.status_code == 201, resp.text
    assert resp.json()["spec"]["tasks"][0]["agent"] == "helper"  # registered unpinned

    first = await start(client, workflow="triage")
    assert first["agents"] == {"helper": 2}
    await register_agent("helper", description="third")
    second = await start(client, workflow="triage")
    assert second["agents"] == {"helper": 3}

    spec = await stored_spec(resources, first["id"])
    assert spec["tasks"][0]["agent"] == "helper@2"  # later versions do not change the run
    assert spec["agents"] == {"helper": 2}
    assert spec["tasks"][1] == {"id": "done", "kind": "tool", "tool": "noop", "needs": ["a0"]}
    assert parse_spec(spec).task("a0").agent == "helper@2"  # the orchestrator reads it as is
    assert (await client.get(f"/v1/runs/{first['id']}")).json()["agents"] == {"helper": 2}

    def plans_arrived() -> bool:
        specs = {
            p.payload.run_id: p.payload.spec for p in plans if isinstance(p.payload, PlanRequested)
        }
        assert set(specs) == {first["id"], second["id"]}
        assert specs[first["id"]]["tasks"][0]["agent"] == "helper@2"
        assert specs[second["id"]]["tasks"][0]["agent"] == "helper@3"
        return True

    await assert_eventually(plans_arrived, timeout=20, message="plan.requested never arrived")


async def test_handoff_targets_are_pinned_transitively_and_explicit_versions_kept(
    client: httpx.AsyncClient, resources: Resources, register_agent: RegisterAgent
) -> None:
    await register_agent("tier3")
    await register_agent("tier3")
    await register_agent("tier2", handoffs=["tier3"])
    await register_agent("tier1")
    await register_agent("tier1", handoffs=["tier2"])
    await register_agent("loner")  # registered but unreachable: not pinned

    run = await start(client, spec=workflow("tier1@2", "tier1"))
    spec = await stored_spec(resources, run["id"])
    assert [t["agent"] for t in spec["tasks"][:2]] == ["tier1@2", "tier1@2"]
    assert spec["agents"] == {"tier1": 2, "tier2": 1, "tier3": 2}

    # tier1@1 has no handoffs; the unversioned task follows the first explicit version.
    run = await start(client, spec=workflow("tier1@1", "tier1"))
    spec = await stored_spec(resources, run["id"])
    assert [t["agent"] for t in spec["tasks"][:2]] == ["tier1@1", "tier1@1"]
    assert spec["agents"] == {"tier1": 1}


async def test_the_specs_agents_map_chooses_versions_for_tasks_and_handoffs(
    client: httpx.AsyncClient, resources: Resources, register_agent: RegisterAgent
) -> None:
    await register_agent("tier2")
    await register_agent("tier2")
    await register_agent("tier1", handoffs=["tier2"])
    run = await start(client, spec=workflow("tier1", agents={"tier2": 1}))
    spec = await stored_spec(resources, run["id"])
    assert spec["tasks"][0]["agent"] == "tier1@1"
    assert spec["agents"] == {"tier1": 1, "tier2": 1}


async def test_unknown_agents_are_422_problems_naming_the_task_field(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    await register_agent("helper")
    resp = await client.post(
        "/v1/runs",
        json={"spec": workflow("helper", "ghost", "helper@7", "Not A Ref", agents={"other": 1})},
    )
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["type"] == "urn:cadenza:problem:invalid-workflow"
    errors = {e["field"]: (e["code"], e["task"]) for e in problem["errors"]}
    assert errors == {"spec.tasks[3].agent": ("invalid_field", "a3")}  # references first
    resp = await client.post(
        "/v1/runs", json={"spec": workflow("helper", "ghost", "helper@7", agents={"other": 1})}
    )
    errors = {e["field"]: (e["code"], e["task"]) for e in resp.json()["errors"]}
    assert errors == {
        "spec.tasks[1].agent": ("unknown_agent", "a1"),
        "spec.tasks[2].agent": ("unknown_agent", "a2"),
        "spec.agents.other": ("unknown_agent", None),
    }
    messages = " ".join(e["message"] for e in resp.json()["errors"])
    assert "no agent named 'ghost'" in messages
    assert "agent 'helper' has no version 7" in messages


async def test_workflow_registration_checks_that_agents_exist(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    resp = await client.post("/v1/workflows", json=workflow("helper"))
    assert resp.status_code == 422
    (error,) = resp.json()["errors"]
    assert (error["field"], error["code"], error["task"]) == (
        "tasks[0].agent",
        "unknown_agent",
        "a0",
    )
    await register_agent("helper")
    resp = await client.post("/v1/workflows", json=workflow("helper@2", agents={"helper": 1}))
    assert {e["field"] for e in resp.json()["errors"]} == {"tasks[0].agent"}
    resp = await client.post("/v1/workflows", json=workflow("helper@1", agents={"helper": 1}))
    assert resp.status_code == 201, resp.text
    assert resp.json()["spec"]["agents"] == {"helper": 1}


async def test_agents_of_another_tenant_do_not_resolve(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    await register_agent("helper")
    resp = await client.post(
        "/v1/runs", json={"spec": workflow("helper")}, headers={"X-Tenant-Id": "acme"}
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["code"] == "unknown_agent"


async def test_idempotent_replay_of_an_inline_spec_survives_a_new_agent_version(
    client: httpx.AsyncClient, register_agent: RegisterAgent
) -> None:
    await register_agent("helper")
    body = {"spec": workflow("helper")}
    headers = {"Idempotency-Key": "pin-1"}
    first = await client.post("/v1/runs", json=body, headers=headers)
    assert first.status_code == 201, first.text
    await register_agent("helper")  # the replay must not pin again
    again = await client.post("/v1/runs", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["agents"] == {"helper": 1}
    other = await client.post("/v1/runs", json={"spec": workflow("helper@2")}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:cadenza:problem:idempotency-key-reused"


async def test_runs_without_agents_store_no_agents_map(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    run = await start(client, spec=workflow())
    assert run["agents"] == {}
    assert "agents" not in await stored_spec(resources, run["id"])
