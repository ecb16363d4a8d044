"""Held tasks in the orchestrator: a worker's ``awaiting_approval`` result parks the task and
records the request (once, even when delivered twice); the sweeper answers an approval
past its deadline with its ``on_timeout`` policy; an answer dispatches the task again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cadenza_events import Hold, TaskReady, TaskResult
from cadenza_orchestrator import metrics
from cadenza_state import ApprovalRecord, AuditLogEntry, utcnow
from orchestrator_stack import UNIT, Reply, Stack, publish_result
from sqlalchemy import select, update
from support import assert_eventually

pytestmark = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)

ONE = {
    "name": "one",
    "tasks": [{"id": "act", "tool": "http_request"}],
    "output": "${{ tasks.act.output }}",
}


def held_first(ready: TaskReady, params: dict[str, Any]) -> Reply:
    """Attempt 1 is held (the test reports it); attempt 2 succeeds."""
    return {"output": {"made": True}} if ready.attempt > 1 else None


async def hold(stack: Stack, run_id: str, on_timeout: str) -> TaskResult:
    async def dispatched() -> TaskReady | None:
        return next(iter(stack.worker.by_node("act")), None)

    ready = await assert_eventually(dispatched, timeout=30)
    result = TaskResult(
        run_id=run_id,
        task_id=ready.task_id,
        attempt=1,
        status="awaiting_approval",
        hold=Hold(
            kind="approval",
            call_index=0,
            tool="http_request",
            arguments={"method": "DELETE", "url": "https://shop.example/orders/7"},
            timeout_s=3600,
            on_timeout=on_timeout,
        ),
        worker_id="w1",
    )
    await publish_result(stack.resources, result)
    await publish_result(stack.resources, result)  # at-least-once: recorded once
    return result


async def expire_now(stack: Stack, run_id: str) -> int:
    async with stack.resources.sessions() as session, session.begin():
        await session.execute(
            update(ApprovalRecord)
            .where(ApprovalRecord.run_id == run_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    return await stack.orchestrator.sweeper.expire_holds()


@pytest.mark.parametrize("on_timeout", ["reject", "fail"])
async def test_an_unanswered_approval_expires_by_its_policy(stack: Stack, on_timeout: str) -> None:
    stack.worker.script = held_first
    run_id = await stack.submit(ONE, {})
    await hold(stack, run_id, on_timeout)
    await stack.wait_run(run_id, "running")

    async def parked() -> bool:
        tasks = await stack.tasks(run_id)
        return tasks["act"].status == "awaiting_approval"

    await assert_eventually(parked, timeout=30)
    async with stack.resources.sessions() as session:
        approvals = (
            await session.scalars(select(ApprovalRecord).where(ApprovalRecord.run_id == run_id))
        ).all()
    assert [(a.status, a.attempt, a.on_timeout) for a in approvals] == [("pending", 1, on_timeout)]
    assert await stack.orchestrator.sweeper.expire_holds() == 0  # not due yet
    assert metrics.HOLDS_PENDING.labels("approval")._value.get() == 1

    assert await expire_now(stack, run_id) == 1
    run = await stack.wait_run(run_id)
    if on_timeout == "reject":
        assert run.status == "succeeded", run.error
        assert [r.attempt for r in stack.worker.by_node("act")] == [1, 2]
    else:
        assert run.status == "failed"
        assert (await stack.tasks(run_id))["act"].error["code"] == "approval_timeout"
        assert [r.attempt for r in stack.worker.by_node("act")] == [1]
    async with stack.resources.sessions() as session:
        approval = await session.scalar(
            select(ApprovalRecord).where(ApprovalRecord.run_id == run_id)
        )
        audit = await session.scalar(
            select(AuditLogEntry.action).where(AuditLogEntry.subject == f"approval:{approval.id}")
        )
    assert (approval.status, approval.decided_by) == ("expired", "system:timeout")
    assert audit == "approval.expired"
    events = [e.kind for e in await stack.run_events(run_id)]
    assert "task.awaiting_approval" in events
    assert "task.hold_resolved" in events


async def test_cancelling_the_run_cancels_its_held_task_and_pending_approval(
    stack: Stack,
) -> None:
    stack.worker.script = held_first
    run_id = await stack.submit(ONE, {})
    await hold(stack, run_id, "reject")

    async def parked() -> bool:
        return (await stack.tasks(run_id))["act"].status == "awaiting_approval"

    await assert_eventually(parked, timeout=30)
    await stack.cancel(run_id, reason="not needed")
    run = await stack.wait_run(run_id)
    assert run.status == "cancelled"
    assert (await stack.tasks(run_id))["act"].status == "cancelled"
    async with stack.resources.sessions() as session:
        approval = await session.scalar(
            select(ApprovalRecord).where(ApprovalRecord.run_id == run_id)
        )
    assert approval is not None
    assert (approval.status, approval.decided_by) == ("cancelled", "system:run_finished")
    assert [r.attempt for r in stack.worker.by_node("act")] == [1]


async def test_task_ready_carries_the_task_s_own_approval_rules(stack: Stack) -> None:
    """The worker holds a tool task by the rules in its ``task.ready`` (it reads no run
    row per task): the task's own rules as registered, ``{}`` for a task without any."""
    rule = {"rules": [{"tool": "transform", "when": "args.amount > 100"}], "on_timeout": "fail"}
    spec = {
        "name": "ruled",
        "tasks": [
            {"id": "ruled", "tool": "transform", "with": {"amount": 500}, "approval": rule},
            {"id": "free", "tool": "transform", "with": {"amount": 5}},
        ],
    }
    run_id = await stack.submit(spec, {})
    assert (await stack.wait_run(run_id)).status == "succeeded"
    (ruled,) = stack.worker.by_node("ruled")
    (free,) = stack.worker.by_node("free")
    assert ruled.approval == rule  # as registered, nothing added
    assert free.approval == {}
