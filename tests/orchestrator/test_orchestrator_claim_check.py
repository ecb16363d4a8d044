"""Claim-check: large params travel by reference, referenced outputs are read back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cadenza_events import TaskReady
from orchestrator_stack import UNIT, Reply, Stack
from support import assert_eventually

SPEC: dict[str, Any] = {
    "name": "big",
    "inputs": {"blob": {"type": "string"}},
    "tasks": [
        {"id": "big", "tool": "transform", "with": {"blob": "${{ inputs.blob }}", "n": 1}},
        {
            "id": "use",
            "tool": "transform",
            "needs": ["big"],
            "with": {"size": "${{ len(tasks.big.output.blob) }}", "n": "${{ tasks.big.output.n }}"},
        },
    ],
    "output": "${{ tasks.use.output }}",
}


async def test_large_params_and_outputs_go_through_the_object_store(stack: Stack) -> None:
    blob = "x" * 300_000  # above the 256 KiB default
    objects = stack.resources.objects

    async def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "big" and ready.attempt == 1:
            await stack.set_started_marker(ready.task_id, 1)  # this worker will die
            return None
        if ready.node_id == "big":
            # A worker claim-checks its large output and sends the reference.
            key = f"runs/{ready.run_id}/tasks/{ready.task_id}/output-{ready.attempt}.json"
            await objects.put(key, json.dumps(params).encode(), "application/json")
            await stack.worker.reply(ready, {"output": None, "output_ref": key})
            return None
        return {"output": params}

    stack.worker.script = script
    run_id = await stack.submit(SPEC, {"blob": blob})
    first = await assert_eventually(lambda: stack.worker.by_node("big"))
    assert first[0].params is None
    assert first[0].params_ref == f"runs/{run_id}/tasks/{first[0].task_id}/params.json"
    assert stack.worker.params[(first[0].task_id, 1)] == {"blob": blob, "n": 1}

    # A re-dispatch reuses the stored params.
    assert await stack.orchestrator.sweep_once() == 1
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert run.output == {"size": 300_000, "n": 1}
    again = stack.worker.by_node("big")[1]
    assert (again.attempt, again.params, again.params_ref) == (2, None, first[0].params_ref)

    tasks = await stack.tasks(run_id)
    assert tasks["big"].input is None  # the row keeps the reference, not the payload
    assert tasks["big"].output is None
    assert tasks["big"].output_ref is not None
    assert tasks["use"].input == {"size": 300_000, "n": 1}


@pytest.mark.parametrize("stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True)
async def test_missing_claim_checked_output_fails_the_reader(stack: Stack) -> None:
    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        if ready.node_id == "big":
            return {"output": None, "output_ref": f"runs/{ready.run_id}/gone.json"}
        return {"output": params}

    stack.worker.script = script
    run_id = await stack.submit(SPEC, {"blob": "small"})
    run = await stack.wait_run(run_id)
    assert run.status == "failed"
    use = (await stack.tasks(run_id))["use"]
    assert use.status == "failed"
    assert use.error is not None
    assert use.error["code"] == "object_not_found"
