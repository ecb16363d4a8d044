"""Agent handoffs: the orchestrator sends the task on to the other agent as a new attempt."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import TaskReady
from orchestrator_stack import UNIT, Reply, Stack

pytestmark = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)

SUPPORT = {
    "name": "support",
    "inputs": {"message": {"type": "string"}},
    "tasks": [
        {"id": "answer", "agent": "tier1@1", "prompt": "${{ inputs.message }}"},
        {
            "id": "close",
            "tool": "transform",
            "needs": ["answer"],
            "with": {"reply": "${{ tasks.answer.output }}"},
        },
    ],
    "output": "${{ tasks.close.output.reply }}",
    "agents": {"tier1": 1, "tier2": 4},  # what the gateway pinned when the run started
}


def hand(to: str, by: str) -> dict[str, Any]:
    return {
        "handoff": {
            "agent": to,
            "from_agent": by,
            "reason": f"{by} is out of its depth",
            "messages": [{"role": "user", "content": "refund me"}],
        }
    }


def tier_chain(ready: TaskReady, params: dict[str, Any]) -> Reply:
    if ready.node_id == "close":
        return {"output": params}
    return {"tier1@1": hand("tier2", "tier1"), "tier2@4": {"output": "refunded"}}[ready.name]


async def test_a_handoff_dispatches_the_task_to_the_other_agent_with_the_conversation(
    stack: Stack,
) -> None:
    stack.worker.script = tier_chain
    run_id = await stack.submit(SUPPORT, {"message": "refund me"})
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == "refunded"

    first, second = stack.worker.by_node("answer")
    assert (first.name, first.attempt) == ("tier1@1", 1)
    assert (second.name, second.attempt) == ("tier2@4", 2)  # the run's pinned version
    handoff = stack.worker.params[(second.task_id, 2)]["handoff"]
    assert handoff["from"] == "tier1"
    assert handoff["depth"] == 1
    assert handoff["messages"] == [{"role": "user", "content": "refund me"}]
    assert stack.worker.params[(second.task_id, 2)]["prompt"] == "refund me"

    attempts = {
        (a.attempt, a.status) for a in await stack.attempts(run_id) if "answer" in a.task_id
    }
    assert attempts == {(1, "handed_off"), (2, "succeeded")}
    events = [e for e in await stack.run_events(run_id) if e.kind == "task.handoff"]
    assert [(e.data["from"], e.data["to"], e.data["depth"]) for e in events] == [
        ("tier1", "tier2", 1)
    ]


async def test_handoffs_are_bounded(stack: Stack) -> None:
    # Two agents that keep handing the task to each other.
    def ping_pong(ready: TaskReady, params: dict[str, Any]) -> Reply:
        me = ready.name.partition("@")[0]
        return hand("tier1" if me == "tier2" else "tier2", me)

    stack.worker.script = ping_pong
    await stack.restart_orchestrator(max_handoffs=2)
    run_id = await stack.submit(SUPPORT, {"message": "loop"})
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    tasks = await stack.tasks(run_id)
    assert tasks["answer"].error is not None
    assert tasks["answer"].error["code"] == "handoff_depth_exceeded"
    assert len(stack.worker.by_node("answer")) == 3  # the first agent + 2 handoffs
