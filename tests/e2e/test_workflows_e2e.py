"""Workflows end to end: gateway, orchestrator and workers as separate OS processes on real
Kafka, PostgreSQL, Redis and MinIO. Effects are checked in the database: exactly once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from cadenza_events import Envelope, Topic
from cadenza_events.kafka import KafkaBus
from cadenza_runtime import keys
from cadenza_state import HotState, StateSettings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import assert_eventually
from support.cluster import Cluster
from support.drills import effect_chain, finished, start_run, tool

DIAMOND = {
    "name": "diamond",
    "inputs": {"x": {"type": "integer", "default": 2}},
    "tasks": [
        tool("a", "transform", **{"with": {"v": "${{ inputs.x }}"}}),
        tool("b", "transform", needs=["a"], **{"with": {"v": "${{ tasks.a.output.v + 1 }}"}}),
        tool("c", "transform", needs=["a"], **{"with": {"v": "${{ tasks.a.output.v * 10 }}"}}),
        tool(
            "d",
            "transform",
            needs=["b", "c"],
            **{"with": {"sum": "${{ tasks.b.output.v + tasks.c.output.v }}"}},
        ),
    ],
    "output": "${{ tasks.d.output.sum }}",
}


def chain(name: str, length: int, seconds: float) -> dict[str, Any]:
    tasks = [tool("s0", "sleep", **{"with": {"seconds": seconds}})]
    tasks += [
        tool(f"s{i}", "sleep", needs=[f"s{i - 1}"], **{"with": {"seconds": seconds}})
        for i in range(1, length)
    ]
    return {"name": name, "tasks": tasks}


async def wait_until_a_worker_runs(
    cluster: Cluster, api: httpx.AsyncClient, run_id: str, node: str
) -> None:
    """Workers write no task state (the orchestrator does, from results): a task runs once
    a worker holds its lease in Redis."""
    hot = HotState.from_settings(StateSettings(redis_key_prefix=f"{cluster.namespace}:"))

    async def running() -> bool:
        run = (await api.get(f"/v1/runs/{run_id}")).json()
        task = next((t for t in run["tasks"] if t["node_id"] == node), None)
        return task is not None and await hot.lease_owner(keys.task_lease(task["id"])) is not None

    try:
        await assert_eventually(running, timeout=30)
    finally:
        await hot.redis.aclose()


async def effects(db: AsyncEngine, run_id: str) -> dict[str, tuple[str, int, int, int]]:
    """node[index] → (status, attempt, recorded tool effects, recorded attempt results)."""
    async with db.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT t.node_id, t.item_index, t.status, t.attempt,
                       (SELECT count(*) FROM tool_effects e WHERE e.task_id = t.id),
                       (SELECT count(*) FROM task_attempts a WHERE a.task_id = t.id)
                FROM tasks t WHERE t.run_id = :run
                """
            ),
            {"run": run_id},
        )
        return {
            f"{node}[{index}]" if index is not None else node: (status, attempt, fx, results)
            for node, index, status, attempt, fx, results in rows
        }


def assert_exactly_once(fx: dict[str, tuple[str, int, int, int]]) -> None:
    """Every task succeeded with one recorded result per dispatched attempt; side-effecting
    (`fx*`) tasks recorded their effect once. Pure tools (transform, sleep, noop) are not
    journaled. A fan-out's group row (`square` beside `square[0]`...) has no attempts."""
    groups = {name.split("[")[0] for name in fx if "[" in name}
    for name, (status, attempt, tool_effects, results) in fx.items():
        assert status == "succeeded", f"{name}: {status}"
        if name in groups:
            continue
        assert results == attempt, f"{name}: {results} results for {attempt} attempt(s)"
        expected = 1 if name.startswith("fx") else 0
        assert tool_effects == expected, f"{name}: {tool_effects} effects"
        if name.startswith("fx"):
            assert results == 1, f"{name}: a side-effecting task ran {results} attempts"


def assert_called_once(run: dict[str, Any]) -> None:
    for task in run["tasks"]:
        if task["node_id"].startswith("fx"):
            assert task["output"] == {"calls": 1}, f"{task['node_id']} executed {task['output']}"


async def test_diamond_dag(api: httpx.AsyncClient, db: AsyncEngine) -> None:
    run_id = await start_run(api, DIAMOND, {"x": 2})
    run = await finished(api, run_id)
    assert run["status"] == "succeeded", run
    assert run["output"] == 23  # b = 3, c = 20
    assert_exactly_once(await effects(db, run_id))


async def test_fan_out_100_with_fan_in(api: httpx.AsyncClient, db: AsyncEngine) -> None:
    spec = {
        "name": "squares",
        "tasks": [
            tool("items", "transform", **{"with": {"list": "${{ list(range(100)) }}"}}),
            tool(
                "square",
                "transform",
                needs=["items"],
                for_each="tasks.items.output.list",
                **{"with": {"sq": "${{ item * item }}"}},
            ),
            tool(
                "total",
                "transform",
                needs=["square"],
                **{"with": {"sum": "${{ sum([o.sq for o in tasks.square.output]) }}"}},
            ),
        ],
        "output": "${{ tasks.total.output.sum }}",
    }
    run_id = await start_run(api, spec)
    run = await finished(api, run_id, timeout=120)
    assert run["status"] == "succeeded", run.get("error")
    assert run["output"] == sum(i * i for i in range(100))
    fx = await effects(db, run_id)
    assert len([k for k in fx if k.startswith("square[")]) == 100
    assert_exactly_once(fx)


async def test_condition_skips_dependants_unless_they_opt_in(api: httpx.AsyncClient) -> None:
    spec = {
        "name": "conditional",
        "inputs": {"amount": {"type": "number"}},
        "tasks": [
            tool("review", "transform", when="inputs.amount > 100", **{"with": {"ok": True}}),
            tool("notify", "transform", needs=["review"], **{"with": {"sent": True}}),
            tool(
                "audit",
                "transform",
                needs=["review"],
                run_if_skipped=True,
                **{"with": {"logged": True}},
            ),
        ],
    }
    run = await finished(api, await start_run(api, spec, {"amount": 5}))
    status = {t["node_id"]: t["status"] for t in run["tasks"]}
    assert run["status"] == "succeeded"
    assert status == {"review": "skipped", "notify": "skipped", "audit": "succeeded"}


async def test_retry_then_succeed_and_fallback_path(api: httpx.AsyncClient) -> None:
    spec = {
        "name": "retries",
        "tasks": [
            tool(
                "charge",
                "flaky",
                retry={"max_attempts": 3, "initial_backoff_s": 0.05, "max_backoff_s": 0.2},
                **{"with": {"failures": 2, "key": "${{ run.id }}-charge"}},
            ),
            tool(
                "refund",
                "flaky",
                retry={"max_attempts": 2, "initial_backoff_s": 0.05, "max_backoff_s": 0.2},
                on_failure="manual",
                **{"with": {"failures": 5, "key": "${{ run.id }}-refund"}},
            ),
            tool("manual", "transform", fallback=True, **{"with": {"queued": True}}),
            tool(
                "done",
                "transform",
                needs=["charge", "refund"],
                **{"with": {"refund": "${{ tasks.refund.output }}"}},
            ),
        ],
        "output": "${{ tasks.done.output.refund }}",
    }
    run = await finished(api, await start_run(api, spec))
    assert run["status"] == "succeeded", run.get("error")
    tasks = {t["node_id"]: t for t in run["tasks"]}
    assert tasks["charge"]["status"] == "succeeded"
    assert tasks["charge"]["output"] == {"calls": 3}  # failed twice, succeeded on the third try
    assert tasks["refund"]["status"] == "recovered"
    assert tasks["manual"]["status"] == "succeeded"
    assert run["output"] == {"queued": True}  # dependants see the fallback's output


async def test_non_retryable_failure_fails_the_run_at_once(api: httpx.AsyncClient) -> None:
    spec = {
        "name": "forbidden",
        "tasks": [
            # Loopback is refused by the http_request tool unless explicitly allowed: a
            # permanent error, so no retries even though the policy allows 5 tries.
            tool(
                "fetch",
                "http_request",
                retry={"max_attempts": 5, "initial_backoff_s": 0.5},
                **{"with": {"url": "http://127.0.0.1:9/"}},
            ),
            tool("after", "transform", needs=["fetch"], **{"with": {}}),
        ],
    }
    run = await finished(api, await start_run(api, spec))
    tasks = {t["node_id"]: t for t in run["tasks"]}
    assert run["status"] == "failed"
    assert tasks["fetch"]["status"] == "failed"
    assert tasks["fetch"]["error"]["retryable"] is False
    assert tasks["after"]["status"] in {"cancelled", "skipped", "pending"}


async def test_timeout(api: httpx.AsyncClient) -> None:
    spec = {
        "name": "slow",
        "tasks": [
            tool(
                "nap",
                "sleep",
                timeout_s=0.5,
                retry={"max_attempts": 1},
                **{"with": {"seconds": 10}},
            )
        ],
    }
    run = await finished(api, await start_run(api, spec), timeout=30)
    (task,) = run["tasks"]
    assert run["status"] == "failed"
    assert task["error"]["code"] == "timeout"


async def test_cancellation_stops_running_tasks(
    api: httpx.AsyncClient, db: AsyncEngine, cluster: Cluster
) -> None:
    run_id = await start_run(api, chain("long", 2, 30))
    started = time.monotonic()
    await wait_until_a_worker_runs(cluster, api, run_id, "s0")
    resp = await api.post(f"/v1/runs/{run_id}/cancel")
    assert resp.status_code in (200, 202), resp.text
    run = await finished(api, run_id, timeout=15)
    assert run["status"] == "cancelled"
    assert {t["status"] for t in run["tasks"]} == {"cancelled"}

    async def stopped() -> bool:
        # The worker saw the cancel flag within a heartbeat, stopped the 30 s sleep for
        # real and reported its attempt as cancelled (recorded although the run had ended).
        async with db.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT a.status FROM task_attempts a JOIN tasks t ON t.id = a.task_id "
                    "WHERE t.run_id = :run AND t.node_id = 's0'"
                ),
                {"run": run_id},
            )
            return [r[0] for r in rows] == ["cancelled"]

    await assert_eventually(stopped, timeout=15)
    assert time.monotonic() - started < 30  # well before the sleep would have ended
    again = await api.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409


async def test_idempotency_key_returns_the_same_run(api: httpx.AsyncClient) -> None:
    body = {"spec": DIAMOND, "inputs": {"x": 1}}
    first = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "order-42"})
    second = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    listed = (await api.get("/v1/runs", params={"limit": 100})).json()["items"]
    assert [r["id"] for r in listed].count(first.json()["id"]) == 1


async def test_duplicate_deliveries_have_effects_exactly_once(
    api: httpx.AsyncClient, db: AsyncEngine, kafka: KafkaBus
) -> None:
    """A saboteur re-publishes every task.ready and task.result twice while the run goes."""
    doubled = 0

    async def duplicate(env: Envelope[Any]) -> None:
        nonlocal doubled
        topic = Topic.TASK_READY if env.type.endswith("task.ready.v1") else Topic.TASK_RESULT
        await kafka.publisher.publish_many([(topic, env), (topic, env)])
        doubled += 1

    spec = {
        "name": "effects-diamond",
        "tasks": [
            tool("a", "transform", **{"with": {"v": 1}}),
            tool(
                "fx_b", "flaky", needs=["a"], **{"with": {"failures": 0, "key": "${{ run.id }}-b"}}
            ),
            tool(
                "fx_c", "flaky", needs=["a"], **{"with": {"failures": 0, "key": "${{ run.id }}-c"}}
            ),
            tool(
                "d",
                "transform",
                needs=["fx_b", "fx_c"],
                **{"with": {"calls": "${{ tasks.fx_b.output.calls + tasks.fx_c.output.calls }}"}},
            ),
        ],
        "output": "${{ tasks.d.output.calls }}",
    }
    saboteur = kafka.consumer([Topic.TASK_READY, Topic.TASK_RESULT], "saboteur", duplicate)
    await saboteur.start()
    try:
        run_id = await start_run(api, spec)
        run = await finished(api, run_id)
        await asyncio.sleep(1.5)  # let the duplicates land after completion too
    finally:
        await saboteur.stop()
    assert doubled >= 8  # 4 task.ready + 4 task.result, each re-sent twice
    assert run["status"] == "succeeded"
    assert run["output"] == 2  # each side effect ran exactly once
    assert_called_once(run)
    assert_exactly_once(await effects(db, run_id))


async def test_kill_9_orchestrator_mid_run(
    cluster: Cluster, api: httpx.AsyncClient, db: AsyncEngine
) -> None:
    run_id = await start_run(api, effect_chain("chain", 4, 0.3))

    async def progressed() -> bool:
        fx = await effects(db, run_id)
        return sum(1 for s, *_ in fx.values() if s == "succeeded") >= 3

    await assert_eventually(progressed, timeout=30)
    orchestrator = next(p for p in cluster.processes if p.name == "orchestrator")
    orchestrator.kill()
    cluster.start_orchestrator()
    run = await finished(api, run_id, timeout=90)
    assert run["status"] == "succeeded", run.get("error")
    assert_called_once(run)
    assert_exactly_once(await effects(db, run_id))


async def test_kill_9_worker_mid_task(
    cluster: Cluster, api: httpx.AsyncClient, db: AsyncEngine
) -> None:
    run_id = await start_run(api, effect_chain("nap", 2, 2.0))

    await wait_until_a_worker_runs(cluster, api, run_id, "s0")
    worker = next(p for p in cluster.processes if p.name == "worker")
    worker.kill()  # mid-sleep: no result, no effect recorded, lease left to expire
    cluster.start_worker()
    run = await finished(api, run_id, timeout=90)
    assert run["status"] == "succeeded", run.get("error")
    # Recovery is either the redelivered task.ready (resumed once the lease expired) or the
    # sweeper's re-dispatch (attempt 2); both must leave every effect exactly once.
    fx = await effects(db, run_id)
    assert_called_once(run)
    assert_exactly_once(fx)


BAD_SPECS = [
    (
        {"name": "c", "tasks": [tool("a", "noop", needs=["b"]), tool("b", "noop", needs=["a"])]},
        "cycle",
        "a",
    ),
    ({"name": "u", "tasks": [tool("a", "noop", needs=["ghost"])]}, "unknown_need", "a"),
    ({"name": "d", "tasks": [tool("a", "noop"), tool("a", "noop")]}, "duplicate_id", "a"),
    ({"name": "e", "tasks": [tool("a", "noop", when="inputs.x >")]}, "invalid_expression", "a"),
    ({"name": "t", "tasks": [tool("a", "no_such_tool")]}, "unknown_tool", "a"),
]


async def test_bad_specs_are_rejected_naming_task_and_field(api: httpx.AsyncClient) -> None:
    for spec, code, task in BAD_SPECS:
        resp = await api.post("/v1/runs", json={"spec": spec, "inputs": {}})
        assert resp.status_code == 422, (code, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        errors = resp.json()["errors"]
        assert any(e["code"] == code and e["task"] == task and e["field"] for e in errors), (
            code,
            errors,
        )
    missing = await api.post(
        "/v1/runs", json={"spec": DIAMOND | {"inputs": {"x": {"type": "integer"}}}}
    )
    assert missing.status_code == 422
    assert any(e["field"] == "inputs.x" for e in missing.json()["errors"])
    huge = await api.post(
        "/v1/runs",
        content=b'{"spec": "' + b"x" * (2 << 20) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    listed = (await api.get("/v1/runs")).json()["items"]
    assert listed == [], "nothing half-created"
