"""Workflow semantics (docs/workflows.md) driven through the orchestrator with a fake worker."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import Envelope, RunEvent, RunStopped, TaskReady, Topic
from cadenza_runtime import keys
from orchestrator_specs import DIAMOND, FAN_OUT
from orchestrator_stack import INTEGRATION, UNIT, Reply, Stack
from prometheus_client import REGISTRY
from support import assert_eventually

unit_only = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)


async def test_diamond_dag(stack: Stack) -> None:
    run_id = await stack.submit(DIAMOND, {"n": 3})
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {"sum": 30 + 4, "text": "a=3"}
    assert run.finished_at is not None

    tasks = await stack.tasks(run_id)
    assert {k: (t.status, t.attempt) for k, t in tasks.items()} == dict.fromkeys(
        "abcd", ("succeeded", 1)
    )
    assert tasks["d"].input == {"sum": 34, "run": run_id}
    assert tasks["d"].output == {"sum": 34, "run": run_id}
    # d is dispatched only after both b and c finished, exactly once.
    order = [r.node_id for r in stack.worker.received]
    assert order[0] == "a"
    assert order[-1] == "d"
    assert sorted(order[1:3]) == ["b", "c"]
    assert set(stack.worker.dispatch_counts().values()) == {1}
    attempts = await stack.attempts(run_id)
    assert sorted((a.task_id, a.attempt, a.status) for a in attempts) == sorted(
        (tasks[n].id, 1, "succeeded") for n in "abcd"
    )

    ready = stack.worker.by_node("a")[0]
    assert (ready.kind, ready.name, ready.max_attempts, ready.timeout_s) == (
        "tool",
        "transform",
        3,
        300.0,
    )

    kinds = [e.kind for e in await stack.run_events(run_id)]
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.succeeded"
    assert kinds.count("task.ready") == 4
    assert kinds.count("task.succeeded") == 4

    async def hot_status() -> bool:
        status = await stack.resources.hot.get_run_status(run_id)
        assert status is not None
        assert (status["status"], status["tasks_total"], status["tasks_done"]) == (
            "succeeded",
            "4",
            "4",
        )
        return True

    await assert_eventually(hot_status, message="hot status never caught up")


def _rows_loaded() -> float:
    return REGISTRY.get_sample_value("cadenza_orchestrator_task_rows_loaded_total") or 0.0


async def test_fan_out_of_100_with_fan_in(stack: Stack) -> None:
    # Work per result must not grow with the run: count the task rows the orchestrator
    # reads (its own metric; the stack's orchestrator runs in this process). On PostgreSQL
    # a run this process planned is held whole in memory and no row is read at all; then
    # the same run as a process that did not plan it goes on with it (from the database).
    memory = stack.orchestrator.handlers.memory
    for in_memory in [True, False] if stack.kind == INTEGRATION else [False]:
        memory.max_rows = memory.max_rows if in_memory else 0
        before = _rows_loaded()
        run_id = await stack.submit(FAN_OUT)
        await stack.wait_run(run_id, timeout=60)
        loads = _rows_loaded() - before
        if in_memory:
            assert loads == 0
        else:  # ~3 rows per result (the task, its fan-out row, the fan-in once), not 100
            assert 0 < loads < 5 * 102, loads
        await _check_fan_out_of_100(stack, run_id)


async def _check_fan_out_of_100(stack: Stack, run_id: str) -> None:
    run = await stack.run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {"sum": sum(i * i for i in range(100)), "n": 100}
    tasks = await stack.tasks(run_id)
    instances = [tasks[f"square[{i}]"] for i in range(100)]
    assert all(t.status == "succeeded" and t.attempt == 1 for t in instances)
    assert [t.input for t in instances] == [{"index": i, "sq": i * i} for i in range(100)]
    square = tasks["square"]
    assert (square.status, square.attempt) == ("succeeded", 1)  # dispatched as its instances
    assert square.output == [{"index": i, "sq": i * i} for i in range(100)]
    assert tasks["total"].output == {"sum": 328350, "first": 0, "last": 99}
    assert len([r for r in stack.worker.by_node("square") if r.run_id == run_id]) == 100
    # One recorded result per task row: 100 instances, prepare, total and the fan-in.
    attempts = await stack.attempts(run_id)
    assert len(attempts) == 103
    assert {(a.attempt, a.status) for a in attempts} == {(1, "succeeded")}


@unit_only
async def test_fan_out_instances_skipped_by_when_and_empty_fan_out(stack: Stack) -> None:
    spec = {
        "name": "fan-when",
        "tasks": [
            {
                "id": "odd",
                "tool": "transform",
                "for_each": [1, 2, 3, 4],
                "when": "item % 2 == 1",
                "with": {"v": "${{ item }}"},
            },
            {"id": "none", "tool": "transform", "for_each": "[]", "with": {}},
            {"id": "never", "tool": "transform", "for_each": [1], "when": "false", "with": {}},
            {
                "id": "join",
                "tool": "transform",
                "needs": ["odd", "none", "never"],
                "run_if_skipped": True,
                "with": {
                    "odd": "${{ tasks.odd.output }}",
                    "none": "${{ tasks.none.output }}",
                    "never": "${{ tasks.never.status }}",
                },
            },
        ],
    }
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    tasks = await stack.tasks(run_id)
    assert tasks["join"].output == {
        "odd": [{"v": 1}, None, {"v": 3}, None],
        "none": [],
        "never": "skipped",
    }
    assert tasks["odd[1]"].status == "skipped"
    assert tasks["never"].status == "skipped"


WHEN: dict[str, Any] = {
    "name": "hello",
    "inputs": {
        "items": {
            "type": "array",
            "default": [{"qty": 2, "unit_price": 9.5}, {"qty": 1, "unit_price": 120}],
        },
        "review_threshold": {"type": "number", "default": 100},
    },
    "tasks": [
        {"id": "prepare", "tool": "transform", "with": {"lines": "${{ inputs.items }}"}},
        {
            "id": "flag_review",
            "tool": "transform",
            "needs": ["prepare"],
            "when": "sum(l.qty * l.unit_price for l in tasks.prepare.output.lines) > inputs.review_threshold",
            "with": {"reason": "large"},
        },
        {"id": "notify", "tool": "transform", "needs": ["flag_review"], "with": {"x": 1}},
        {
            "id": "summary",
            "tool": "transform",
            "needs": ["flag_review", "prepare"],
            "run_if_skipped": True,
            "with": {"needs_review": "${{ tasks.flag_review.status == 'succeeded' }}"},
        },
    ],
    "output": "${{ tasks.summary.output }}",
}


@unit_only
@pytest.mark.parametrize(("threshold", "flagged"), [(100, True), (500, False)])
async def test_when_skip_and_run_if_skipped(stack: Stack, threshold: int, flagged: bool) -> None:
    run_id = await stack.submit(WHEN, {"review_threshold": threshold})
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {"needs_review": flagged}
    tasks = await stack.tasks(run_id)
    expected = "succeeded" if flagged else "skipped"
    assert tasks["flag_review"].status == expected
    assert tasks["notify"].status == expected  # a skipped need skips its dependants…
    assert tasks["summary"].status == "succeeded"  # …unless they set run_if_skipped
    assert tasks["flag_review"].output is None if not flagged else True
    dispatched = {r.node_id for r in stack.worker.received}
    assert ("flag_review" in dispatched) is flagged
    assert ("notify" in dispatched) is flagged


FALLBACK: dict[str, Any] = {
    "name": "retry",
    "inputs": {"order_id": {"type": "string", "default": "ord-42"}},
    "tasks": [
        {
            "id": "charge_card",
            "tool": "flaky",
            "with": {"failures": 3},
            "on_failure": "queue_for_manual",
        },
        {
            "id": "queue_for_manual",
            "tool": "transform",
            "fallback": True,
            "with": {
                "order": "${{ inputs.order_id }}",
                "reason": "${{ tasks.charge_card.error.code }}",
            },
        },
        {
            "id": "confirm",
            "tool": "transform",
            "needs": ["charge_card"],
            "with": {
                "charged": "${{ tasks.charge_card.status == 'succeeded' }}",
                "status": "${{ tasks.charge_card.status }}",
                "via": "${{ tasks.charge_card.output.get('order') }}",
            },
        },
    ],
    "output": {"order": "${{ inputs.order_id }}", "confirm": "${{ tasks.confirm.output }}"},
}


def fail_node(*nodes: str, code: str = "boom") -> Any:
    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id in nodes:
            return {"error": code, "message": f"{ready.node_id} exploded"}
        return {"output": params}

    return script


@unit_only
async def test_fallback_recovers_the_failed_task(stack: Stack) -> None:
    stack.worker.script = fail_node("charge_card", code="card_declined")
    run_id = await stack.submit(FALLBACK)
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {
        "order": "ord-42",
        "confirm": {"charged": False, "status": "recovered", "via": "ord-42"},
    }
    tasks = await stack.tasks(run_id)
    charge = tasks["charge_card"]
    assert charge.status == "recovered"
    assert charge.error is not None
    assert charge.error["code"] == "card_declined"
    assert charge.output == {"order": "ord-42", "reason": "card_declined"}
    assert tasks["queue_for_manual"].status == "succeeded"
    kinds = [e.kind for e in await stack.run_events(run_id)]
    assert "task.failed" in kinds
    assert "task.recovered" in kinds


@unit_only
async def test_untriggered_fallback_is_skipped(stack: Stack) -> None:
    run_id = await stack.submit(FALLBACK)
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    tasks = await stack.tasks(run_id)
    assert tasks["charge_card"].status == "succeeded"
    assert tasks["queue_for_manual"].status == "skipped"
    assert "queue_for_manual" not in {r.node_id for r in stack.worker.received}
    assert run.output["confirm"]["charged"] is True


@unit_only
async def test_failing_fallback_fails_the_run(stack: Stack) -> None:
    stack.worker.script = fail_node("charge_card", "queue_for_manual")
    run_id = await stack.submit(FALLBACK)
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["task"] == "queue_for_manual"
    tasks = await stack.tasks(run_id)
    assert tasks["charge_card"].status == "failed"
    assert tasks["confirm"].status == "cancelled"


@unit_only
async def test_fan_out_instance_failure_runs_the_fallback_once(stack: Stack) -> None:
    spec = {
        "name": "fan-fail",
        "tasks": [
            {
                "id": "each",
                "tool": "transform",
                "for_each": [0, 1, 2],
                "with": {"i": "${{ item }}"},
                "on_failure": "rescue",
            },
            {
                "id": "rescue",
                "tool": "transform",
                "fallback": True,
                "with": {"err": "${{ tasks.each.error.code }}"},
            },
            {
                "id": "after",
                "tool": "transform",
                "needs": ["each"],
                "with": {"got": "${{ tasks.each.output }}"},
            },
        ],
        "output": "${{ tasks.after.output.got }}",
    }

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "each" and params["i"] == 1:
            return {"error": "bad_item"}
        return {"output": params}

    stack.worker.script = script
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {"err": "bad_item"}
    tasks = await stack.tasks(run_id)
    assert tasks["each"].status == "recovered"
    assert tasks["each"].error is not None
    assert tasks["each"].error["item_index"] == 1
    assert len(stack.worker.by_node("rescue")) == 1


@unit_only
async def test_failure_without_fallback_fails_the_run_and_cancels_the_rest(stack: Stack) -> None:
    spec = {
        "name": "fail",
        "tasks": [
            {"id": "bad", "tool": "transform", "with": {}},
            {"id": "slow", "tool": "sleep", "with": {"seconds": 60}},
            {"id": "later", "tool": "transform", "needs": ["bad", "slow"], "with": {}},
        ],
    }

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "bad":
            return {"error": "kaput", "message": "it broke"}
        return None  # "slow" keeps running

    stack.worker.script = script
    stops: list[Any] = []

    async def hear(env: Envelope[Any]) -> None:
        stops.append(env.payload)

    control = stack.resources.bus.listener([Topic.RUN_CONTROL], hear, "test-control")
    await control.start()
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    # Workers are told to stop the run's tasks in flight ("slow") at once.
    await assert_eventually(lambda: stops, message="run.stopped broadcast")
    await control.stop()
    assert stops == [RunStopped(run_id=run_id, status="failed")]
    assert run.error is not None
    assert run.error["code"] == "task_failed"
    assert run.error["task"] == "bad"
    assert "it broke" in run.error["message"]
    tasks = await stack.tasks(run_id)
    assert (tasks["bad"].status, tasks["slow"].status, tasks["later"].status) == (
        "failed",
        "cancelled",
        "cancelled",
    )
    hot = stack.resources.hot

    async def marked() -> bool:  # set right after the commit the run's status is read from
        return bool(await hot.redis.exists(hot.key(keys.run_cancelled(run_id))))

    await assert_eventually(marked, message="the workers' stop marker was never set")
    # The late result of the cancelled task is recorded as history and changes nothing.
    slow = stack.worker.by_node("slow")[0]
    await stack.worker.reply(slow, {"output": {"late": True}})

    async def recorded() -> dict[str, str]:
        attempts = {a.task_id: a.status for a in await stack.attempts(run_id)}
        assert tasks["slow"].id in attempts
        return attempts

    attempts = await assert_eventually(recorded)
    assert attempts == {tasks["bad"].id: "failed", tasks["slow"].id: "succeeded"}
    assert (await stack.tasks(run_id))["slow"].status == "cancelled"
    kinds = [e.kind for e in await stack.run_events(run_id)]
    assert kinds[-1] == "run.failed"


@unit_only
async def test_output_expression_failure_fails_the_run(stack: Stack) -> None:
    spec = {
        "name": "bad-output",
        "tasks": [{"id": "a", "tool": "transform", "with": {"v": 1}}],
        "output": "${{ tasks.a.output.missing }}",
    }
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["code"] == "output_expression"
    assert "run output expression failed" in run.error["message"]
    assert run.error["expression"] == "tasks.a.output.missing"
    assert (await stack.tasks(run_id))["a"].status == "succeeded"


@unit_only
async def test_expression_error_fails_the_task_without_dispatch(stack: Stack) -> None:
    spec = {
        "name": "bad-params",
        "tasks": [
            {"id": "a", "tool": "transform", "with": {"v": {"x": 1}}},
            {
                "id": "b",
                "tool": "transform",
                "needs": ["a"],
                "with": {"v": "${{ tasks.a.output.v.y }}"},
            },
        ],
    }
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    tasks = await stack.tasks(run_id)
    assert tasks["b"].status == "failed"
    assert tasks["b"].attempt == 0
    assert tasks["b"].error is not None
    assert tasks["b"].error["code"] == "invalid_expression"
    assert tasks["b"].error["retryable"] is False
    assert [r.node_id for r in stack.worker.received] == ["a"]


@unit_only
async def test_invalid_stored_spec_fails_the_run(stack: Stack) -> None:
    spec = {"name": "broken", "tasks": [{"id": "a", "tool": "transform", "needs": ["nope"]}]}
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert run.error["code"] == "invalid_workflow"
    assert await stack.tasks(run_id) == {}


@unit_only
async def test_agent_task_carries_its_rendered_prompt(stack: Stack) -> None:
    spec = {
        "name": "agent",
        "inputs": {"who": {"type": "string"}},
        "tasks": [
            {"id": "ask", "agent": "helper", "prompt": "greet ${{ inputs.who }}", "with": {"k": 1}}
        ],
    }
    run_id = await stack.submit(spec, {"who": "ada"})
    await stack.wait_run(run_id)
    ready = stack.worker.received[0]
    assert (ready.kind, ready.name, ready.params) == (
        "agent",
        "helper",
        {"k": 1, "prompt": "greet ada"},
    )


@unit_only
@pytest.mark.parametrize("chained", [False, True])
async def test_shared_fallback_waits_for_its_other_triggers(stack: Stack, chained: bool) -> None:
    """t1 fails; the fallback waits for t2 unless t2 is downstream of t1 (then t2 can only
    run once the fallback recovered t1)."""
    spec = {
        "name": "shared",
        "tasks": [
            {"id": "t1", "tool": "transform", "with": {"n": 1}, "on_failure": "fb"},
            {
                "id": "t2",
                "tool": "transform",
                "needs": ["t1"] if chained else [],
                "with": {"n": 2},
                "on_failure": "fb",
            },
            {
                "id": "fb",
                "tool": "transform",
                "fallback": True,
                "with": {"seen": "${{ [tasks.t1.status, tasks.t2.status] }}"},
            },
        ],
        "output": "${{ [tasks.t1.status, tasks.t2.status, tasks.t1.output] }}",
    }
    held: list[TaskReady] = []

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "t1":
            return {"error": "nope"}
        if ready.node_id == "t2" and not chained:
            held.append(ready)
            return None
        return {"output": params}

    stack.worker.script = script
    run_id = await stack.submit(spec)
    if not chained:

        async def t1_failed() -> bool:
            return (await stack.tasks(run_id))["t1"].status == "failed"

        await assert_eventually(lambda: held)
        await assert_eventually(t1_failed)
        assert (await stack.tasks(run_id))["fb"].status == "pending"  # waits for t2
        await stack.worker.reply(held[0], {"output": {"n": 2}})
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    # Chained, t2 cannot finish before the fallback recovers t1: the fallback sees it pending.
    seen = ["failed", "pending" if chained else "succeeded"]
    assert stack.worker.by_node("fb")[0].params == {"seen": seen}
    assert run.output == ["recovered", "succeeded", {"seen": seen}]
    assert len(stack.worker.by_node("fb")) == 1


@unit_only
async def test_triggered_fallback_skipped_by_when_fails_the_run(stack: Stack) -> None:
    spec = {
        "name": "fb-when",
        "tasks": [
            {"id": "a", "tool": "transform", "with": {}, "on_failure": "fb"},
            {"id": "fb", "tool": "transform", "fallback": True, "when": "false", "with": {}},
            {"id": "b", "tool": "transform", "needs": ["a"], "with": {}},
        ],
    }
    stack.worker.script = fail_node("a")
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    assert run.error is not None
    assert "its fallback 'fb' was skipped" in run.error["message"]
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["fb"].status, tasks["b"].status) == (
        "failed",
        "skipped",
        "cancelled",
    )


@unit_only
async def test_task_failing_after_its_fallback_ran_is_recovered_by_it(stack: Stack) -> None:
    spec = {
        "name": "late-trigger",
        "tasks": [
            {"id": "t1", "tool": "transform", "with": {"n": 1}, "on_failure": "fb"},
            {
                "id": "t2",
                "tool": "transform",
                "needs": ["t1"],
                "with": {"n": 2},
                "on_failure": "fb",
            },
            {"id": "fb", "tool": "transform", "fallback": True, "with": {"rescued": True}},
            {"id": "end", "tool": "transform", "needs": ["t2"], "with": {"v": "${{ tasks.t2 }}"}},
        ],
        "output": "${{ tasks.end.output.v.status }}",
    }
    stack.worker.script = fail_node("t1", "t2")
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == "recovered"
    tasks = await stack.tasks(run_id)
    assert (tasks["t1"].status, tasks["t2"].status) == ("recovered", "recovered")
    assert tasks["t2"].output == {"rescued": True}
    assert len(stack.worker.by_node("fb")) == 1


@unit_only
async def test_the_workers_events_carried_in_a_result_join_the_timeline_once(
    stack: Stack,
) -> None:
    """A worker sends a short task's timeline inside its result (three records per task,
    not four): the orchestrator puts those events on the run's timeline, before its own
    verdict on the task, and a duplicate delivery of the result adds none again."""

    def with_timeline(ready: TaskReady, params: dict[str, Any]) -> Reply:
        events = [
            RunEvent(run_id=ready.run_id, kind=kind, task_id=ready.task_id,
                     node_id=ready.node_id, status=status, data={"attempt": ready.attempt})
            for kind, status in (("task.started", "running"), ("task.finished", "succeeded"))
        ]  # fmt: skip
        return {"output": params, "events": events}

    stack.worker.script = with_timeline
    stack.worker.duplicate_results = True
    run_id = await stack.submit(DIAMOND, {"n": 3})
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error

    timeline = await stack.run_events(run_id)
    for node in "abcd":
        kinds = [e.kind for e in timeline if e.node_id == node and e.task_id is not None]
        assert kinds == ["task.ready", "task.started", "task.finished", "task.succeeded"], (
            node,
            kinds,
        )
