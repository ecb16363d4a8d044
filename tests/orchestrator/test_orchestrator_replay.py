"""A fork through the real orchestrator (both stacks): tasks whose cache key is unchanged
complete from the parent's outputs (`task.reused`, never sent to a worker); a task with an
agent override runs with the override on every dispatch, a re-dispatch too; a dependant
whose inputs did not change is reused."""

from __future__ import annotations

from typing import Any

from cadenza_events import TaskReady
from orchestrator_stack import Reply, Stack
from support import assert_eventually

SPEC: dict[str, Any] = {
    "name": "forked",
    "inputs": {"topic": {"type": "string"}},
    "tasks": [
        {"id": "fetch", "tool": "transform", "with": {"topic": "${{ inputs.topic }}"}},
        {
            "id": "ask",
            "agent": "helper@1",
            "needs": ["fetch"],
            "prompt": "about ${{ tasks.fetch.output.topic }}",
        },
        {
            "id": "report",
            "tool": "transform",
            "needs": ["ask"],
            "with": {"a": "${{ tasks.ask.output }}"},
        },
    ],
    "output": "${{ tasks.report.output }}",
}


async def test_a_fork_reuses_unchanged_tasks_and_overrides_the_agent(stack: Stack) -> None:
    parent_id = await stack.submit(SPEC, {"topic": "fees"})
    parent = await stack.wait_run(parent_id)
    assert parent.status == "succeeded", parent.error
    recorded = await stack.tasks(parent_id)
    assert all(t.cache_key for t in recorded.values())
    assert len(stack.worker.received) == 3

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "ask" and ready.attempt == 1:
            await stack.set_started_marker(ready.task_id, 1)  # this worker vanishes
            return None
        # The agent answers the same as before: its dependant's inputs do not change.
        return {"output": params}

    stack.worker.script = script
    stack.worker.received.clear()
    override = {"system_prompt": "Answer in one word."}
    child_id = await stack.submit(
        SPEC,
        {"topic": "fees"},
        replay={
            "parent_run_id": parent_id,
            "reuse": {t.node_id: t.cache_key for t in recorded.values()},
            "overrides": {"ask": override},
        },
    )
    first = await assert_eventually(lambda: stack.worker.by_node("ask"), timeout=30)
    assert first[0].agent_overrides == override
    assert await stack.orchestrator.sweep_once() == 1  # re-dispatched: still overridden
    child = await stack.wait_run(child_id)
    assert child.status == "succeeded", child.error
    assert [(r.node_id, r.attempt, r.agent_overrides) for r in stack.worker.received] == [
        ("ask", 1, override),
        ("ask", 2, override),
    ]
    tasks = await stack.tasks(child_id)
    assert tasks["fetch"].reused_from == f"{parent_id}.fetch"
    assert tasks["report"].reused_from == f"{parent_id}.report"
    assert tasks["ask"].reused_from is None
    assert tasks["ask"].cache_key != recorded["ask"].cache_key
    assert child.output == parent.output
    reused = [e for e in await stack.run_events(child_id) if e.kind == "task.reused"]
    assert sorted((e.node_id, e.data["source"]) for e in reused) == [
        ("fetch", "parent"),
        ("report", "parent"),
    ]
