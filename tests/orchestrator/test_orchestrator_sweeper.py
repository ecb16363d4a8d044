"""The sweeper re-dispatches tasks whose worker vanished (simulated with Redis markers)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cadenza_events import TaskReady
from cadenza_runtime import keys
from orchestrator_stack import UNIT, Reply, Stack, publish_result
from support import assert_eventually

pytestmark = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)

SPEC: dict[str, Any] = {
    "name": "sweep",
    "tasks": [
        {"id": "lost", "tool": "transform", "with": {"v": 1}},
        {"id": "alive", "tool": "transform", "with": {"v": 2}},
        {"id": "done", "tool": "transform", "with": {"v": 3}},
        {"id": "queued", "tool": "transform", "with": {"v": 4}},
        {
            "id": "join",
            "tool": "transform",
            "needs": ["lost", "alive", "done", "queued"],
            "with": {"v": "${{ tasks.lost.output.v }}"},
        },
    ],
    "output": "${{ tasks.join.output.v }}",
}


async def test_lost_worker_is_redispatched_with_the_next_attempt(stack: Stack) -> None:
    hot = stack.resources.hot
    held: dict[str, TaskReady] = {}

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "join" or ready.attempt > 1:
            return {"output": params}
        held[ready.node_id] = ready
        tid, n = ready.task_id, ready.attempt
        if ready.node_id == "lost":  # started, then killed: its process stopped beating
            await stack.set_started_marker(tid, n)
            await hot.acquire_lease(keys.task_lease(tid), f"w-dead:{n}", 60_000)
        elif ready.node_id == "alive":  # its worker process still heartbeats
            await stack.set_started_marker(tid, n)
            await hot.acquire_lease(keys.task_lease(tid), f"w1:{n}", 60_000)
            await hot.redis.set(hot.key(keys.worker_alive("w1")), "1", ex=600)
        elif ready.node_id == "done":  # result published just now, lease released
            await stack.set_started_marker(tid, n)
            await hot.redis.set(hot.key(keys.task_done(tid, n)), f"succeeded:{int(time.time())}")
        return None  # "queued": no worker picked it up yet

    stack.worker.script = script
    run_id = await stack.submit(SPEC)
    await assert_eventually(lambda: len(held) == 4)

    assert await stack.orchestrator.sweep_once() == 1  # only "lost"
    assert await stack.orchestrator.sweep_once() == 0  # attempt 2 is fresh
    lost = await assert_eventually(lambda: [r for r in stack.worker.received if r.attempt == 2])
    assert [r.node_id for r in lost] == ["lost"]
    assert lost[0].params == {"v": 1}

    # The other three finish normally; the late result of lost attempt 1 is a duplicate.
    for node in ("alive", "done", "queued"):
        await stack.worker.reply(held[node], {"output": {"v": 0}})
    await stack.worker.reply(held["lost"], {"output": {"v": "stale"}})
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == 1

    tasks = await stack.tasks(run_id)
    assert (tasks["lost"].status, tasks["lost"].attempt) == ("succeeded", 2)
    attempts = {
        (x.attempt, x.status) for x in await stack.attempts(run_id) if x.task_id == tasks["lost"].id
    }
    assert attempts == {(1, "lost"), (2, "succeeded")}
    events = [e for e in await stack.run_events(run_id) if e.task_id == tasks["lost"].id]
    assert [(e.kind, e.data.get("reason")) for e in events if e.kind == "task.ready"] == [
        ("task.ready", None),
        ("task.ready", "worker_lost"),
    ]


async def test_task_fails_with_worker_lost_after_max_dispatches(stack: Stack) -> None:
    await stack.restart_orchestrator(max_dispatches=2)

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        await stack.set_started_marker(ready.task_id, ready.attempt)
        return None  # every worker dies

    stack.worker.script = script
    spec = {"name": "doomed", "tasks": [{"id": "a", "tool": "transform", "with": {}}]}
    run_id = await stack.submit(spec)
    await assert_eventually(lambda: len(stack.worker.received) == 1)
    assert await stack.orchestrator.sweep_once() == 1
    await assert_eventually(lambda: len(stack.worker.received) == 2)
    assert await stack.orchestrator.sweep_once() == 1

    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["cause"]["code"] == "worker_lost"
    task = (await stack.tasks(run_id))["a"]
    assert (task.status, task.attempt) == ("failed", 2)
    assert sorted((x.attempt, x.status) for x in await stack.attempts(run_id)) == [
        (1, "lost"),
        (2, "lost"),
    ]


async def test_ready_task_never_started_is_requeued_after_a_while(stack: Stack) -> None:
    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        return {"output": params} if ready.attempt > 1 else None  # first event lost

    stack.worker.script = script
    spec = {"name": "requeue", "tasks": [{"id": "a", "tool": "transform", "with": {"x": 1}}]}
    run_id = await stack.submit(spec)
    await assert_eventually(lambda: len(stack.worker.received) == 1)
    assert await stack.orchestrator.sweep_once() == 0  # not yet: requeue_after_s = 300

    await stack.restart_orchestrator(requeue_after_s=0.001)
    assert await stack.orchestrator.sweep_once() == 1
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert [r.attempt for r in stack.worker.received] == [1, 2]
    events = await stack.run_events(run_id)
    assert [e.data.get("reason") for e in events if e.kind == "task.ready"] == [
        None,
        "not_started",
    ]


async def test_sweeper_leaves_finished_runs_alone(stack: Stack) -> None:
    stack.worker.script = lambda ready, params: None
    spec = {"name": "idle", "tasks": [{"id": "a", "tool": "transform", "with": {}}]}
    run_id = await stack.submit(spec)
    ready = await assert_eventually(lambda: stack.worker.received)
    await stack.set_started_marker(ready[0].task_id, 1)
    await stack.worker.reply(ready[0], {"output": {}})
    await stack.wait_run(run_id)
    assert await stack.orchestrator.sweep_once() == 0
    # A result published again after the sweep is still a duplicate.
    await publish_result(stack.resources, stack.worker.results[0])


async def test_result_published_but_never_applied_is_redispatched(stack: Stack) -> None:
    """A done marker says the result went out; if it was never applied (lost, e.g.
    dead-lettered) the task must not wait forever: after result_timeout_s it runs again."""
    await stack.restart_orchestrator(result_timeout_s=30)
    hot = stack.resources.hot
    published_at: dict[str, float] = {}

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.attempt > 1:
            return {"output": params}
        await stack.set_started_marker(ready.task_id, ready.attempt)
        done = hot.key(keys.task_done(ready.task_id, ready.attempt))
        await hot.redis.set(done, f"succeeded:{int(published_at[ready.node_id])}")
        return None  # the result never reaches the orchestrator

    stack.worker.script = script
    published_at.update({"recent": time.time() - 5, "old": time.time() - 60})
    spec = {
        "name": "lost-result",
        "tasks": [
            {"id": "recent", "tool": "transform", "with": {"x": 1}},
            {"id": "old", "tool": "transform", "with": {"x": 2}},
        ],
    }
    await stack.submit(spec)
    await assert_eventually(lambda: len(stack.worker.received) == 2)
    assert await stack.orchestrator.sweep_once() == 1  # only the old one
    again = await assert_eventually(lambda: [r for r in stack.worker.received if r.attempt == 2])
    assert [r.node_id for r in again] == ["old"]
    events = await stack.run_events(again[0].run_id)
    reasons = [e.data.get("reason") for e in events if e.kind == "task.ready"]
    assert "result_lost" in reasons


async def test_lease_of_a_live_worker_for_an_older_attempt_does_not_count(stack: Stack) -> None:
    """A lease left by attempt 1 says nothing about attempt 2: started without its own
    lease means the worker gave it back or died."""
    hot = stack.resources.hot

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        await stack.set_started_marker(ready.task_id, ready.attempt)
        await hot.acquire_lease(keys.task_lease(ready.task_id), "w1:0", 60_000)
        await hot.redis.set(hot.key(keys.worker_alive("w1")), "1", ex=600)
        return None

    stack.worker.script = script
    await stack.submit({"name": "old-lease", "tasks": [{"id": "a", "tool": "transform"}]})
    await assert_eventually(lambda: len(stack.worker.received) == 1)
    assert await stack.orchestrator.sweep_once() == 1
