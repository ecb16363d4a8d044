"""A task stopped by a budget ends its run as ``budget_exceeded`` (the orchestrator is the
only writer of run status): open tasks are cancelled, running workers told to stop, and the
run's error names the budget and what was spent."""

from __future__ import annotations

from typing import Any

from cadenza_events import TaskReady
from cadenza_runtime import keys
from orchestrator_stack import Reply, Stack
from prometheus_client import REGISTRY
from support import assert_eventually

RUN_BUDGET = {"budget": "run", "unit": "tokens", "limit": 1000, "spent": 980, "requested": 600}


async def test_a_budget_stop_ends_the_run_as_budget_exceeded(stack: Stack) -> None:
    spec = {
        "name": "spend",
        "tasks": [
            {"id": "costly", "tool": "transform", "with": {}, "on_failure": "cheap"},
            {"id": "cheap", "tool": "transform", "with": {}, "fallback": True},
            {"id": "slow", "tool": "sleep", "with": {"seconds": 60}},
            {"id": "after", "tool": "transform", "needs": ["costly", "slow"], "with": {}},
        ],
    }

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "costly":
            return {"error": "budget_exceeded", "message": "run budget", "details": RUN_BUDGET}
        return None  # "slow" keeps running

    stack.worker.script = script
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id, "budget_exceeded", "failed", "succeeded")
    assert run.status == "budget_exceeded"
    assert run.error is not None
    assert run.error["code"] == "budget_exceeded"
    assert run.error["budget"] == RUN_BUDGET
    assert run.finished_at is not None
    tasks = await stack.tasks(run_id)
    assert tasks["costly"].status == "failed"
    assert (tasks["slow"].status, tasks["after"].status) == ("cancelled", "cancelled")
    assert stack.worker.by_node("cheap") == []  # the fallback could only spend more
    hot = stack.resources.hot

    async def workers_told_to_stop() -> bool:  # after the commit
        return bool(await hot.redis.exists(hot.key(keys.run_cancelled(run_id))))

    await assert_eventually(workers_told_to_stop)
    kinds = [e.kind for e in await stack.run_events(run_id)]
    assert kinds[-1] == "run.budget_exceeded"


PAUSING = RUN_BUDGET | {"on_exceeded": "pause"}


async def test_a_pausing_budget_holds_the_task_and_a_resume_finishes_the_run(
    stack: Stack,
) -> None:
    """``on_exceeded: pause``: the task that could not reserve is held (``paused``, not
    failed), the run is ``paused`` with the budget facts, the run's other tasks go on; a
    resume (with a raised run limit) dispatches the held task again and the run finishes."""
    spec = {
        "name": "pausing",
        "tasks": [
            {"id": "costly", "tool": "transform", "with": {}},
            {"id": "other", "tool": "transform", "with": {"x": 1}},
            {"id": "after", "tool": "transform", "needs": ["costly", "other"], "with": {}},
        ],
    }
    budget_open = False

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "costly" and not budget_open:
            return {"error": "budget_exceeded", "message": "run budget", "details": PAUSING}
        return {"output": {"node": ready.node_id, "attempt": ready.attempt}}

    stack.worker.script = script
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id, "paused", "budget_exceeded", "failed", "succeeded")
    assert run.status == "paused"
    assert run.finished_at is None
    assert run.error is not None
    assert run.error["budget"] == PAUSING
    assert run.error["paused"] is True

    async def other_done() -> bool:  # the run's other work goes on while it is paused
        return (await stack.tasks(run_id))["other"].status == "succeeded"

    await assert_eventually(other_done)
    tasks = await stack.tasks(run_id)
    assert tasks["costly"].status == "paused"
    assert tasks["costly"].error is not None
    assert tasks["costly"].error["code"] == "budget_exceeded"
    assert tasks["after"].status == "pending"
    assert (await stack.run(run_id)).status == "paused"  # still: nothing else can finish it
    assert [e.kind for e in await stack.run_events(run_id)].count("run.paused") == 1

    budget_open = True
    await stack.resume(run_id, budget={"max_tokens": 5000})
    run = await stack.wait_run(run_id, "succeeded", "failed", "budget_exceeded")
    assert run.status == "succeeded"
    assert run.error is None
    assert run.budget is not None
    assert run.budget["raised"] == {"max_tokens": 5000}
    assert [r.attempt for r in stack.worker.by_node("costly")] == [1, 2]
    assert len(stack.worker.by_node("after")) == 1
    kinds = [e.kind for e in await stack.run_events(run_id)]
    assert kinds.index("task.paused") < kinds.index("run.resumed") < kinds.index("run.succeeded")
    resumed = next(e for e in await stack.run_events(run_id) if e.kind == "run.resumed")
    assert resumed.data["tasks"] == ["costly"]
    assert resumed.data["budget"] == {"max_tokens": 5000}


async def test_a_resume_of_a_run_that_is_not_paused_changes_nothing(stack: Stack) -> None:
    spec = {"name": "plain", "tasks": [{"id": "a", "tool": "transform", "with": {}}]}
    run_id = await stack.submit(spec)
    await stack.wait_run(run_id, "succeeded")
    before = _resumes("not_paused")
    await stack.resume(run_id)

    async def ignored() -> bool:
        return _resumes("not_paused") == before + 1

    await assert_eventually(ignored)
    assert (await stack.run(run_id)).status == "succeeded"
    assert "run.resumed" not in [e.kind for e in await stack.run_events(run_id)]
    assert len(stack.worker.by_node("a")) == 1


def _resumes(outcome: str) -> float:
    value = REGISTRY.get_sample_value("cadenza_orchestrator_resumes_total", {"outcome": outcome})
    return value or 0.0


async def test_a_stop_budget_still_ends_the_run(stack: Stack) -> None:
    """A task budget never pauses (it belongs to the agent), even with ``pause``."""
    spec = {"name": "taskbudget", "tasks": [{"id": "a", "tool": "transform", "with": {}}]}
    details = PAUSING | {"budget": "task"}

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        return {"error": "budget_exceeded", "message": "task budget", "details": details}

    stack.worker.script = script
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id, "paused", "budget_exceeded", "failed", "succeeded")
    assert run.status == "budget_exceeded"
