"""A few tool tasks made ready together go to their run's task.ready partition
(``OrchestratorSettings.dispatch_group_max``): one worker fetches them in one request and
reports them in one. Fan-outs and agent tasks keep one key per task."""

from __future__ import annotations

from typing import Any

from cadenza_events import TaskReady, Topic
from orchestrator_stack import Stack, transform

SPEC: dict[str, Any] = {
    "name": "groups",
    "tasks": [
        {"id": "few", "tool": "noop", "for_each": "list(range(5))"},
        {"id": "ask", "agent": "helper@1", "prompt": "hi"},
        {"id": "many", "tool": "noop", "for_each": "list(range(20))", "needs": ["few", "ask"]},
        {"id": "last", "tool": "noop", "needs": ["many"]},
    ],
}


def answer(ready: TaskReady, params: dict[str, Any]) -> dict[str, Any]:
    return {"output": "hello"} if ready.kind == "agent" else transform(ready, params) or {}


def keys_by_node(stack: Stack, run_id: str) -> dict[str, set[str | None]]:
    """Each node's tasks' Kafka keys (the topic's key rule on what arrived)."""
    registry = stack.resources.registry
    out: dict[str, set[str | None]] = {}
    for ready in stack.worker.received:
        if ready.run_id != run_id:
            continue
        key = stack.worker.partition_keys[ready.task_id] or ready.task_id
        out.setdefault(ready.node_id, set()).add(key)
    assert registry.partitions_for(Topic.TASK_READY) > 1  # a spread is possible at all
    return out


async def test_a_few_tool_tasks_share_their_runs_key_wide_and_agent_ones_do_not(
    stack: Stack,
) -> None:
    stack.worker.script = answer
    run_id = await stack.submit(SPEC)
    assert (await stack.wait_run(run_id)).status == "succeeded"
    keys = keys_by_node(stack, run_id)
    assert keys["few"] == {run_id}  # 5 tool tasks made ready together: one key
    assert keys["last"] == {run_id}  # one, on its own
    (ask,) = stack.worker.by_node("ask")
    assert keys["ask"] == {ask.task_id}  # an agent task, made ready with "few": its own key
    assert len(keys["many"]) == 20  # 20 > 16: one key per task, spread
    assert run_id not in keys["many"]


async def test_zero_spreads_every_task(stack: Stack) -> None:
    await stack.restart_orchestrator(dispatch_group_max=0)
    stack.worker.script = answer
    run_id = await stack.submit(SPEC)
    assert (await stack.wait_run(run_id)).status == "succeeded"
    keys = keys_by_node(stack, run_id)
    assert all(run_id not in k for k in keys.values()), keys
    assert len(keys["few"]) == 5
