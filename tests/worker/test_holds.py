"""Held tool calls on the worker (docs/guardrails.md): a risky call is not made but reported
``awaiting_approval``; after an answer the next attempt makes it once or refuses it. A
non-idempotent call journaled ``sent`` but never ``done`` is in doubt until a person
answers — and an answer older than the ``sent`` mark does not count."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import agent_support
import pytest
from agent_support import ScriptedProvider, calls, register_agent, start_agent_worker
from cadenza_state import ApprovalRecord, RunRecord, ToolEffectRecord, utcnow
from cadenza_worker.holds import HoldRequested
from cadenza_worker.journal import EffectJournal
from sqlalchemy import update
from worker_support import HttpServer, Stack


async def answer(
    stack: Stack, task_id: str, run_id: str, *, kind: str, status: str, at: Any = None, **extra: Any
) -> None:
    """What the gateway writes when a person answers."""
    async with stack.resources.sessions() as session, session.begin():
        session.add(
            ApprovalRecord(
                id=str(uuid.uuid4()),
                tenant_id="acme",
                run_id=run_id,
                task_id=task_id,
                node_id="n",
                attempt=1,
                call_index=0,
                kind=kind,
                status=status,
                tool="http_request",
                arguments={},
                on_timeout="reject",
                decided_by="key:k1",
                decided_at=at or utcnow(),
                **extra,
            )
        )


async def sent_long_ago(stack: Stack, task_id: str, at: Any) -> None:
    """A `sent` journal entry without its result: a worker died between the two."""
    async with stack.resources.sessions() as session, session.begin():
        session.add(
            ToolEffectRecord(
                task_id=task_id,
                attempt=0,
                call_index=0,
                tool="http_request",
                status="sent",
                created_at=at,
            )
        )


async def test_a_write_waits_for_approval_then_is_made_once(
    stack: Stack, http_server: HttpServer
) -> None:
    await stack.start_worker(http_allow_private=True)
    params = {"url": http_server.url("/echo"), "method": "POST", "json": {"x": 1}}
    task = await stack.add_task("http_request", params)
    await stack.dispatch(task)
    held = await stack.result(task)
    assert held.status == "awaiting_approval"
    assert held.hold is not None
    assert (held.hold.kind, held.hold.tool, held.hold.arguments) == (
        "approval",
        "http_request",
        params,
    )
    assert "not allowlisted (127.0.0.1)" in held.hold.rule
    assert http_server.hits.get("/echo", 0) == 0  # held, not made

    await answer(stack, task.task_id, task.run_id, kind="approval", status="approved")
    again = await stack.redispatch(task)
    done = await stack.result(again)
    assert done.status == "succeeded"
    assert done.output["json"]["body"] == '{"x":1}'
    assert http_server.hits["/echo"] == 1


async def test_a_rejected_call_fails_the_tool_task(stack: Stack, http_server: HttpServer) -> None:
    await stack.start_worker(http_allow_private=True)
    task = await stack.add_task(
        "http_request", {"url": http_server.url("/echo"), "method": "DELETE"}
    )
    await stack.dispatch(task)
    assert (await stack.result(task)).status == "awaiting_approval"
    await answer(
        stack, task.task_id, task.run_id, kind="approval", status="rejected", comment="not today"
    )
    result = await stack.result(await stack.redispatch(task))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "approval_rejected"
    assert "not today" in result.error.message
    assert http_server.hits.get("/echo", 0) == 0


async def test_an_effect_sent_but_not_recorded_is_in_doubt_until_answered(stack: Stack) -> None:
    task = await stack.add_task("http_request", {})
    journal = EffectJournal(stack.resources.sessions)
    made: list[int] = []

    async def call() -> Any:
        made.append(1)
        return {"status": 201}

    long_ago = utcnow() - timedelta(hours=1)
    await sent_long_ago(stack, task.task_id, long_ago)
    with pytest.raises(HoldRequested) as held:
        await journal.run_once(task.task_id, 0, "http_request", {"method": "POST"}, call)
    assert (held.value.hold.kind, held.value.hold.arguments) == ("in_doubt", {"method": "POST"})
    assert made == []

    # "It did not happen": made again, once, and recorded.
    await answer(
        stack,
        task.task_id,
        task.run_id,
        kind="in_doubt",
        status="retry",
        at=long_ago + timedelta(seconds=5),
    )
    assert await journal.run_once(task.task_id, 0, "http_request", {}, call) == (
        {"status": 201},
        False,
    )
    assert made == [1]
    assert await journal.run_once(task.task_id, 0, "http_request", {}, call) == (
        {"status": 201},
        True,
    )

    # The retried call dies between sending and recording too: the old answer does not
    # cover it, so it is in doubt again rather than retried blindly.
    async with stack.resources.sessions() as session, session.begin():
        await session.execute(update(ToolEffectRecord).values(status="sent", result=None))
    with pytest.raises(HoldRequested):
        await journal.run_once(task.task_id, 0, "http_request", {}, call)
    assert made == [1]


async def test_an_effect_in_doubt_resolved_done_takes_the_operator_output(stack: Stack) -> None:
    task = await stack.add_task("http_request", {})
    journal = EffectJournal(stack.resources.sessions)
    long_ago = utcnow() - timedelta(hours=1)
    await sent_long_ago(stack, task.task_id, long_ago)
    await answer(
        stack, task.task_id, task.run_id, kind="in_doubt", status="done", output={"id": "p-1"}
    )

    async def never() -> Any:
        raise AssertionError("a call resolved as done is not made again")

    assert await journal.run_once(task.task_id, 0, "http_request", {}, never) == (
        {"id": "p-1"},
        True,
    )


async def _task_rules(stack: Stack, run_id: str, node_id: str, approval: dict[str, Any]) -> None:
    """The run's workflow gives this task its own approval rules (as registered)."""
    async with stack.resources.sessions() as session, session.begin():
        await session.execute(
            update(RunRecord)
            .where(RunRecord.id == run_id)
            .values(spec={"tasks": [{"id": node_id, "approval": approval}]})
        )


async def test_a_workflow_task_s_own_rule_holds_a_tool_task(stack: Stack) -> None:
    await stack.start_worker()
    task = await stack.add_task("transform", {"amount": 500})
    rule = {"rules": [{"tool": "transform", "when": "args.amount > 100"}], "on_timeout": "fail"}
    await _task_rules(stack, task.run_id, task.node_id, rule)
    await stack.dispatch(task)
    held = await stack.result(task)
    assert held.status == "awaiting_approval"
    assert held.hold is not None
    assert held.hold.rule == "rule(tool=transform when=args.amount > 100)"
    assert held.hold.on_timeout == "fail"

    small = await stack.add_task("transform", {"amount": 5})
    await _task_rules(stack, small.run_id, small.node_id, rule)
    await stack.dispatch(small)
    assert (await stack.result(small)).status == "succeeded"  # the rule does not match


async def test_a_tool_task_s_rules_carried_in_its_event_hold_it_without_the_run_s_spec(
    stack: Stack,
) -> None:
    """The orchestrator puts the task's rules in ``task.ready``: the worker holds by them
    and does not read the run (its stored spec here says nothing, and then the opposite)."""
    await stack.start_worker()
    rule = {"rules": [{"tool": "transform", "when": "args.amount > 100"}], "on_timeout": "fail"}
    task = (await stack.add_task("transform", {"amount": 500})).model_copy(
        update={"approval": rule}
    )
    await stack.dispatch(task)
    held = await stack.result(task)
    assert held.status == "awaiting_approval"
    assert held.hold is not None
    assert held.hold.rule == "rule(tool=transform when=args.amount > 100)"

    # An event that says "no rules" (``{}``, as the orchestrator writes it) is believed over
    # the run's spec: the worker made no read of the run for it.
    free = await stack.add_task("transform", {"amount": 500})
    await _task_rules(stack, free.run_id, free.node_id, rule)
    free = free.model_copy(update={"approval": {}})
    await stack.dispatch(free)
    assert (await stack.result(free)).status == "succeeded"


async def test_a_workflow_task_s_own_rule_holds_an_agent_s_call(stack: Stack) -> None:
    ref = await register_agent(stack)  # the agent has no rules of its own
    provider = ScriptedProvider(
        [calls(("echo", {"text": "wire 900"})), agent_support.answer("done")]
    )
    echo = await start_agent_worker(stack, provider)
    task = await stack.add_task(ref, {"prompt": "go"}, kind="agent")
    await _task_rules(stack, task.run_id, task.node_id, {"rules": [{"tool": "echo"}]})
    await stack.dispatch(task)
    held = await stack.result(task)
    assert held.status == "awaiting_approval"
    assert held.hold is not None
    assert (held.hold.tool, held.hold.rule) == ("echo", "rule(tool=echo)")
    assert echo.calls == []  # held, not made
