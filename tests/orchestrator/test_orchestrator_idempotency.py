"""At-least-once delivery: duplicate, late and stale events change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import Envelope, PlanRequested, RunStopped, TaskReady, TaskResult, Topic
from cadenza_runtime import keys
from orchestrator_specs import DIAMOND
from orchestrator_stack import UNIT, Reply, Stack, publish_result
from prometheus_client import REGISTRY
from support import assert_eventually

unit_only = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)


def ignored(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "cadenza_orchestrator_results_ignored_total", {"reason": reason}
    )
    return value or 0.0


def plans_ignored() -> float:
    value = REGISTRY.get_sample_value(
        "cadenza_orchestrator_plans_ignored_total", {"reason": "duplicate"}
    )
    return value or 0.0


async def wait_ignored(reason: str, before: float, count: int) -> None:
    await assert_eventually(
        lambda: ignored(reason) >= before + count,
        message=f"{count} result(s) ignored as {reason}",
    )


async def test_duplicate_out_of_order_and_stale_results_are_ignored(stack: Stack) -> None:
    stack.worker.duplicate_results = True  # every result is delivered twice
    duplicates = ignored("duplicate")
    unknown = ignored("unknown_attempt")
    run_id = await stack.submit(DIAMOND, {"n": 3}, publish_times=2)  # plan.requested twice
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {"sum": 34, "text": "a=3"}

    # Late copies of every result (out of order: their successors are long done), and
    # results for attempts that were never dispatched.
    for result in stack.worker.results:
        await publish_result(stack.resources, result)
    a = stack.worker.results[0]
    for attempt in (0, 2):
        stale = a.model_copy(update={"attempt": attempt, "output": {"v": -1}})
        await publish_result(stack.resources, stale)
    await wait_ignored("duplicate", duplicates, 4 + 4)
    await wait_ignored("unknown_attempt", unknown, 2)

    tasks = await stack.tasks(run_id)
    assert {n: (t.status, t.attempt) for n, t in tasks.items()} == dict.fromkeys(
        "abcd", ("succeeded", 1)
    )
    assert tasks["a"].output == {"v": 3}
    attempts = await stack.attempts(run_id)
    assert sorted((x.task_id, x.attempt) for x in attempts) == sorted(
        (t.id, 1) for t in tasks.values()
    )
    # Planned once: one dispatch per task despite two plan.requested.
    assert stack.worker.dispatch_counts() == {t.id: 1 for t in tasks.values()}
    assert (await stack.run(run_id)).output == {"sum": 34, "text": "a=3"}


@unit_only
async def test_duplicate_plan_requested_plans_once(stack: Stack) -> None:
    stack.worker.script = lambda ready, params: None  # keep the run going
    before = plans_ignored()
    run_id = await stack.submit(DIAMOND, publish_times=3)
    await stack.wait_run(run_id, "running")
    await assert_eventually(lambda: plans_ignored() >= before + 2)
    await assert_eventually(lambda: stack.worker.received)
    tasks = await stack.tasks(run_id)
    assert sorted(tasks) == ["a", "b", "c", "d"]
    assert [r.node_id for r in stack.worker.received] == ["a"]
    events = [e.kind for e in await stack.run_events(run_id)]
    assert events.count("run.started") == 1


def cancels(outcome: str) -> float:
    value = REGISTRY.get_sample_value("cadenza_orchestrator_cancels_total", {"outcome": outcome})
    return value or 0.0


async def test_a_cancel_command_stops_the_run_and_late_results_change_nothing(
    stack: Stack,
) -> None:
    spec: dict[str, Any] = {
        "name": "cancel",
        "tasks": [
            {"id": "one", "tool": "sleep", "with": {"seconds": 60}},
            {"id": "two", "tool": "sleep", "with": {"seconds": 60}},
            {"id": "three", "tool": "sleep", "with": {"seconds": 60}},
            {"id": "after", "tool": "transform", "needs": ["one"], "with": {}},
        ],
    }
    held: dict[str, TaskReady] = {}

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        held[ready.node_id] = ready  # a worker running it (here: forever)
        return None

    stack.worker.script = script
    run_id = await stack.submit(spec)
    await assert_eventually(lambda: len(held) == 3)
    hot = stack.resources.hot
    marker = hot.key(keys.run_cancelled(run_id))
    assert not await hot.redis.exists(marker)
    stops: list[RunStopped] = []

    async def hear(env: Envelope[Any]) -> None:
        if env.payload.run_id == run_id:
            stops.append(env.payload)

    control = stack.resources.bus.listener([Topic.RUN_CONTROL], hear, "test-control")
    await control.start()

    await stack.cancel(run_id, reason="wrong inputs")
    run = await stack.wait_run(run_id, "cancelled")
    assert run.finished_at is not None
    tasks = await stack.tasks(run_id)
    assert {n: t.status for n, t in tasks.items()} == dict.fromkeys(
        ["one", "two", "three", "after"], "cancelled"
    )
    # The workers' stop marker is set after the commit; the stop is broadcast with it.
    await assert_eventually(lambda: hot.redis.exists(marker), message="stop marker set")
    await assert_eventually(lambda: stops, message="run.stopped broadcast")
    assert stops == [RunStopped(run_id=run_id, status="cancelled")]
    events = await stack.run_events(run_id)
    cancelled = [e for e in events if e.kind == "run.cancelled"]
    assert len(cancelled) == 1
    assert cancelled[0].data == {"requested_by": "key:test", "reason": "wrong inputs"}

    # Late results: one finished just in time, two was stopped by its worker. Both are
    # recorded as history and change nothing.
    ignored_before = ignored("run_cancelled")
    await stack.worker.reply(held["one"], {"output": {"done": True}})
    await stack.worker.reply(held["two"], {"status": "cancelled"})
    await wait_ignored("run_cancelled", ignored_before, 2)
    # The counter moves as the batch is applied, before its transaction commits: wait
    # for the attempts themselves.
    expected = {tasks["one"].id: "succeeded", tasks["two"].id: "cancelled"}

    async def attempts_recorded() -> bool:
        return {x.task_id: x.status for x in await stack.attempts(run_id)} == expected

    await assert_eventually(attempts_recorded, message=f"attempts recorded: {expected}")
    tasks = await stack.tasks(run_id)
    assert {t.status for t in tasks.values()} == {"cancelled"}
    assert {r.node_id for r in stack.worker.received} == {"one", "two", "three"}

    # A repeated cancel changes nothing but sets a lost stop marker again.
    finished_before = cancels("run_finished")
    await hot.redis.delete(marker)
    await stack.cancel(run_id)
    await assert_eventually(lambda: hot.redis.exists(marker), message="marker set again")
    assert cancels("run_finished") == finished_before + 1
    assert (await stack.run(run_id)).status == "cancelled"
    assert [e.kind for e in await stack.run_events(run_id)].count("run.cancelled") == 1
    await control.stop()
    assert len(stops) == 1  # the repeat repairs the marker; it broadcasts nothing


async def test_a_cancel_before_the_plan_cancels_the_run_unplanned(stack: Stack) -> None:
    spec: dict[str, Any] = {"name": "early", "tasks": [{"id": "a", "tool": "echo", "with": {}}]}
    run_id = await stack.submit(spec, publish_times=0)
    await stack.cancel(run_id)
    await stack.wait_run(run_id, "cancelled")
    before = plans_ignored()
    plan = PlanRequested(run_id=run_id, workflow_name="early", spec=spec)
    env = Envelope(payload=plan, source="/test/gateway", tenant_id="acme", plan_id=run_id)
    await stack.resources.publisher.publish(Topic.PLAN_REQUESTED, env)
    await assert_eventually(lambda: plans_ignored() >= before + 1, message="plan ignored")
    assert await stack.tasks(run_id) == {}
    assert stack.worker.received == []


@unit_only
async def test_result_for_an_unknown_task_or_run_is_ignored(stack: Stack) -> None:
    before = ignored("unknown_run")
    await publish_result(
        stack.resources,
        TaskResult(run_id="nope", task_id="nope.a", attempt=1, status="succeeded"),
    )
    await wait_ignored("unknown_run", before, 1)
