"""A task stopped by a budget ends its run as ``budget_exceeded`` (the orchestrator is the
only writer of run status): open tasks are cancelled, running workers told to stop, and the
run's error names the budget and what was spent."""

from __future__ import annotations

from typing import Any

from cadenza_events import TaskReady
from cadenza_runtime import keys
from orchestrator_stack import Reply, Stack
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
