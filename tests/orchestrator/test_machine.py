"""The run state machine's transition rules, called directly: plain rows in, an Outcome
out — no database, no bus (machine.py is pure; the engine applies what it decides)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cadenza_events import Handoff, Hold, HoldResolved, TaskError, TaskResult
from cadenza_orchestrator import TaskRow, machine
from cadenza_orchestrator.graph import RunGraph, task_id_for
from cadenza_orchestrator.outcome import (
    Advance,
    CancelInstances,
    Failed,
    FanIn,
    InstanceFinished,
    Recover,
    Settled,
    Start,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 4, tzinfo=UTC)
RUN = "run-1"


def graph(tasks: list[dict[str, Any]], output: Any = None, inputs: Any = None) -> RunGraph:
    spec: dict[str, Any] = {"name": "m", "tasks": tasks}
    if inputs:
        spec["inputs"] = {name: {"type": "boolean"} for name in inputs}
    if output is not None:
        spec["output"] = output
    return RunGraph.build(RUN, spec, inputs or {})


def row(node: str, status: str = "pending", attempt: int = 0, **values: Any) -> TaskRow:
    item_index = values.pop("item_index", None)
    return TaskRow(
        id=task_id_for(RUN, node, item_index),
        run_id=RUN,
        node_id=node,
        item_index=item_index,
        status=status,
        attempt=attempt,
        max_attempts=3,
        **values,
    )


def result(r: TaskRow, status: str = "succeeded", **values: Any) -> TaskResult:
    return TaskResult(run_id=RUN, task_id=r.id, attempt=r.attempt, status=status, **values)


CHAIN = [
    {"id": "a", "tool": "noop"},
    {"id": "b", "tool": "transform", "needs": ["a"], "with": {"v": "${{ tasks.a.output.x }}"}},
]


def test_plan_creates_a_pending_row_per_task_and_advances_the_roots() -> None:
    g = graph(CHAIN)
    out = machine.plan(g)
    assert sorted((t.node_id, t.status) for t in out.new_tasks) == [
        ("a", "pending"),
        ("b", "pending"),
    ]
    assert out.run is not None
    assert out.run.status == "running"
    assert out.steps == [Advance("a")]


def test_advance_waits_for_needs_then_starts() -> None:
    g = graph(CHAIN)
    rows = {"a": row("a", "running", 1), "b": row("b")}
    assert machine.advance(g.node("b"), rows["b"], rows, g).steps == []
    rows["a"] = row("a", "succeeded", 1)
    assert machine.advance(g.node("b"), rows["b"], rows, g).steps == [Start("b")]


def test_a_skipped_need_skips_the_dependant() -> None:
    g = graph(CHAIN)
    rows = {"a": row("a", "skipped"), "b": row("b")}
    out = machine.advance(g.node("b"), rows["b"], rows, g)
    assert [u.values["status"] for u in out.updates] == ["skipped"]
    assert out.steps == [Settled("b")]


def test_start_renders_params_and_dispatches_the_first_attempt() -> None:
    g = graph(CHAIN)
    ctx = {"inputs": {}, "tasks": {"a": {"output": {"x": 7}}}}
    out = machine.start(g.node("b"), row("b"), ctx, g, NOW)
    assert [(d.attempt, d.params) for d in out.dispatches] == [(1, {"v": 7})]


def test_start_with_a_false_condition_skips() -> None:
    g = graph([{"id": "a", "tool": "noop", "when": "inputs.go"}], inputs={"go": False})
    out = machine.start(g.node("a"), row("a"), {"inputs": {"go": False}, "tasks": {}}, g, NOW)
    assert out.dispatches == []
    assert out.updates[0].values["status"] == "skipped"


def test_start_with_a_failing_expression_fails_the_task_naming_it() -> None:
    g = graph([{"id": "a", "tool": "transform", "with": {"v": "${{ 1 / 0 }}"}}])
    out = machine.start(g.node("a"), row("a"), {"inputs": {}, "tasks": {}}, g, NOW)
    error = out.updates[0].values["error"]
    assert out.updates[0].values["status"] == "failed"
    assert "task 'a'" in error["message"]
    assert out.steps == [Failed("a")]


def test_fan_out_expands_one_instance_per_item() -> None:
    g = graph([{"id": "each", "tool": "noop", "for_each": "list(range(3))"}])
    out = machine.start(g.node("each"), row("each"), {"inputs": {}, "tasks": {}}, g, NOW)
    assert [t.item_index for t in out.new_tasks] == [0, 1, 2]
    assert [d.attempt for d in out.dispatches] == [1, 1, 1]
    assert out.updates[0].values["input"] == {"items": 3, "open": 3}


def test_apply_result_succeeded_stores_output_and_settles() -> None:
    r = row("a", "ready", 1)
    out = machine.apply_result("a", r, result(r, output={"x": 1}, worker_id="w1"))
    values = out.updates[0].values
    assert (values["status"], values["output"], values["worker_id"]) == (
        "succeeded",
        {"x": 1},
        "w1",
    )
    assert out.steps == [Settled("a")]


def test_apply_result_failed_fails_the_task() -> None:
    r = row("a", "ready", 1)
    error = TaskError(code="boom", message="it broke")
    out = machine.apply_result("a", r, result(r, "failed", error=error))
    assert out.updates[0].values["status"] == "failed"
    assert out.updates[0].values["error"]["code"] == "boom"
    assert out.steps == [Failed("a")]


def test_a_handoff_dispatches_the_next_attempt_until_the_depth_limit() -> None:
    r = row("a", "ready", 1, input={"prompt": "hi"})
    handoff = Handoff(agent="billing", from_agent="triage", reason="money")
    out = machine.apply_result("a", r, result(r, handoff=handoff), max_handoffs=1)
    assert [(d.attempt, d.reason) for d in out.dispatches] == [(2, "handoff")]
    assert out.dispatches[0].params is not None
    assert out.dispatches[0].params["handoff"]["depth"] == 1
    deep = row("a", "ready", 2, input=out.dispatches[0].params)
    again = machine.apply_result("a", deep, result(deep, handoff=handoff), max_handoffs=1)
    assert again.updates[0].values["error"]["code"] == "handoff_depth_exceeded"


@pytest.mark.parametrize(
    ("run_status", "row_status", "attempt", "status", "reason"),
    [
        ("running", "ready", 2, "succeeded", "stale_attempt"),
        ("running", "succeeded", 1, "succeeded", "task_finished"),
        ("succeeded", "ready", 1, "succeeded", "run_finished"),
        ("cancelled", "ready", 1, "succeeded", "run_cancelled"),
        ("cancelled", "ready", 1, "cancelled", None),
        ("running", "ready", 1, "succeeded", None),
    ],
)
def test_ignore_reason(
    run_status: str, row_status: str, attempt: int, status: str, reason: str | None
) -> None:
    r = row("a", row_status, 1)
    res = TaskResult(run_id=RUN, task_id=r.id, attempt=attempt, status=status)  # type: ignore[arg-type]
    assert machine.ignore_reason(run_status, r, res) == reason


def test_instances_count_down_and_the_last_triggers_the_fan_in() -> None:
    agg = row("each", "running", 1, input={"items": 2, "open": 2})
    first = row("each", "succeeded", 1, item_index=0)
    out = machine.instance_finished("each", agg, first)
    assert out.updates[0].values["input"] == {"items": 2, "open": 1}
    assert out.steps == []
    agg.input = out.updates[0].values["input"]
    last = machine.instance_finished("each", agg, row("each", "succeeded", 1, item_index=1))
    assert last.steps == [FanIn("each")]


def test_a_failed_instance_fails_the_task_and_cancels_the_others() -> None:
    agg = row("each", "running", 1, input={"items": 3, "open": 3})
    bad = row("each", "failed", 1, item_index=1, error={"code": "boom", "message": "x"})
    out = machine.instance_finished("each", agg, bad)
    assert out.updates[0].values["status"] == "failed"
    assert out.updates[0].values["error"]["item_index"] == 1
    assert out.cancel_instances == [CancelInstances("each")]
    assert [(a.status, a.attempt) for a in out.attempts] == [("failed", 1)]


def test_fan_in_collects_outputs_in_order_or_skips_when_all_skipped() -> None:
    agg = row("each", "running", 1)
    out = machine.fan_in("each", agg, [1, None, 3], ["succeeded", "skipped", "succeeded"])
    assert out.updates[0].values == {"status": "succeeded", "output": [1, None, 3]}
    assert out.steps == [Settled("each")]
    skipped = machine.fan_in("each", agg, [None], ["skipped"])
    assert skipped.updates[0].values["status"] == "skipped"


def test_a_failed_task_goes_to_its_fallback_or_fails_the_run() -> None:
    g = graph(
        [
            {"id": "a", "tool": "noop", "on_failure": "fix"},
            {"id": "fix", "tool": "noop", "fallback": True},
            {"id": "b", "tool": "noop"},
        ]
    )
    failed_a = row("a", "failed", 1, error={"message": "boom"})
    assert machine.failed(g.node("a"), failed_a, row("fix")).steps == [Advance("fix")]
    done_fix = row("fix", "succeeded", 1, output={"ok": True})
    recovered = machine.failed(g.node("a"), failed_a, done_fix)
    assert recovered.updates[0].values["status"] == "recovered"
    assert recovered.steps == [Settled("a")]
    no_fallback = machine.failed(g.node("b"), row("b", "failed", 1, error={"message": "x"}), None)
    assert no_fallback.run is not None
    assert no_fallback.run.status == "failed"
    assert no_fallback.run.error is not None
    assert no_fallback.run.error["task"] == "b"


def test_a_settled_fallback_recovers_its_triggers() -> None:
    g = graph(
        [
            {"id": "a", "tool": "noop", "on_failure": "fix"},
            {"id": "fix", "tool": "noop", "fallback": True},
        ]
    )
    fix = row("fix", "succeeded", 1)
    out = machine.settled(g.node("fix"), fix, {"a": row("a", "failed", 1)})
    assert Recover("fix") in out.steps


def test_finish_run_renders_the_output_or_fails_naming_the_expression() -> None:
    g = graph(CHAIN, output="${{ tasks.b.output.v }}")
    ok = machine.finish_run(g, {"inputs": {}, "tasks": {"b": {"output": {"v": 3}}}})
    assert ok.run is not None
    assert (ok.run.status, ok.run.output) == ("succeeded", 3)
    bad = machine.finish_run(g, {"inputs": {}, "tasks": {"b": {"output": None}}})
    assert bad.run is not None
    assert bad.run.status == "failed"
    assert bad.run.error is not None
    assert bad.run.error["code"] == "output_expression"


def test_redispatch_bumps_the_attempt_then_fails_with_worker_lost() -> None:
    r = row("a", "running", 1, input={"v": 1})
    out = machine.redispatch("a", r, max_dispatches=2, reason="worker_lost")
    assert [(d.attempt, d.params, d.reason) for d in out.dispatches] == [
        (2, {"v": 1}, "worker_lost")
    ]
    assert [(a.attempt, a.status) for a in out.attempts] == [(1, "lost")]
    last = row("a", "running", 2, input={"v": 1})
    final = machine.redispatch("a", last, max_dispatches=2, reason="worker_lost")
    assert final.dispatches == []
    assert final.updates[0].values["error"]["code"] == "worker_lost"
    instance = row("each", "running", 2, item_index=0, input={})
    lost = machine.redispatch("each", instance, max_dispatches=2, reason="worker_lost")
    assert lost.steps == [InstanceFinished(instance.id)]


BUDGET_SPEC = [
    {"id": "a", "tool": "noop", "on_failure": "fix"},
    {"id": "fix", "tool": "noop", "fallback": True},
    {"id": "b", "tool": "noop"},
]


def budget_error(scope: str) -> dict[str, Any]:
    details = {"budget": scope, "unit": "tokens", "limit": 100, "spent": 96, "requested": 40}
    return {"code": "budget_exceeded", "message": f"{scope} budget", "details": details}


def test_a_budget_stop_ends_the_run_as_budget_exceeded_naming_the_budget() -> None:
    g = graph(BUDGET_SPEC)
    failed_b = row("b", "failed", 1, error=budget_error("run"))
    out = machine.failed(g.node("b"), failed_b, None)
    assert out.run is not None
    assert out.run.status == "budget_exceeded"
    assert out.run.error is not None
    assert out.run.error["code"] == "budget_exceeded"
    assert out.run.error["budget"]["budget"] == "run"
    assert out.run.error["budget"]["spent"] == 96
    assert [e.kind for e in out.events] == ["run.budget_exceeded"]


def test_a_run_or_tenant_budget_skips_the_fallback_a_task_budget_may_use_it() -> None:
    g = graph(BUDGET_SPEC)
    for scope in ("run", "tenant_day", "tenant_month"):
        out = machine.failed(
            g.node("a"), row("a", "failed", 1, error=budget_error(scope)), row("fix")
        )
        assert out.run is not None, scope
        assert out.run.status == "budget_exceeded", scope
        assert out.steps == []
    own = machine.failed(g.node("a"), row("a", "failed", 1, error=budget_error("task")), row("fix"))
    assert own.run is None
    assert own.steps == [Advance("fix")]


def test_a_budget_failed_result_keeps_its_details_on_the_task() -> None:
    r = row("a", "running", 1)
    error = TaskError(code="budget_exceeded", message="run budget", details={"budget": "run"})
    out = machine.apply_result("a", r, result(r, "failed", error=error))
    assert out.updates[0].values["error"]["details"] == {"budget": "run"}
    plain = machine.apply_result(
        "a", r, result(r, "failed", error=TaskError(code="x", message="y"))
    )
    assert "details" not in plain.updates[0].values["error"]


def test_a_cancel_cancels_the_run_and_names_who_asked() -> None:
    out = machine.cancel_run(requested_by="key:k1", reason="duplicate order")
    assert out.run is not None
    assert out.run.status == "cancelled"
    assert [(e.kind, e.status, e.data) for e in out.events] == [
        ("run.cancelled", "cancelled", {"requested_by": "key:k1", "reason": "duplicate order"})
    ]
    assert not out.dispatches
    assert not out.new_tasks


def test_a_cancel_without_a_reason_records_none() -> None:
    (event,) = machine.cancel_run(requested_by=None, reason=None).events
    assert event.data == {"requested_by": None}


# -- held tool calls (docs/guardrails.md) ------------------------------------------------------


def held(r: TaskRow, kind: str = "approval", **values: Any) -> TaskResult:
    hold = Hold(
        kind=kind,
        call_index=2,
        tool="http_request",
        arguments={"url": "https://shop.example/orders/7", "method": "DELETE"},
        reason="a duplicate",
        rule="http_request DELETE to a host not allowlisted (shop.example)",
        timeout_s=60,
    )
    status = "awaiting_approval" if kind == "approval" else "in_doubt"
    return result(r, status, hold=hold, worker_id="w1", **values)


@pytest.mark.parametrize(
    ("kind", "status"), [("approval", "awaiting_approval"), ("in_doubt", "in_doubt")]
)
def test_a_held_call_parks_the_task_and_records_the_request(kind: str, status: str) -> None:
    r = row("a", "ready", 1, input={"prompt": "clean up"})
    out = machine.apply_result("a", r, held(r, kind))
    assert out.dispatches == []
    assert out.steps == []
    assert [(u.task_id, u.values["status"]) for u in out.updates] == [(r.id, status)]
    [request] = out.holds
    assert (request.task_id, request.attempt, request.hold.kind) == (r.id, 1, kind)
    assert request.approval_id == machine.approval_id(r.id, 1, 2, kind)  # same on redelivery
    [event] = out.events
    assert event.kind == f"task.{status}"
    assert event.data["approval_id"] == request.approval_id
    assert event.data["tool"] == "http_request"


def test_a_held_status_without_the_call_fails_the_task() -> None:
    r = row("a", "ready", 1)
    out = machine.apply_result("a", r, result(r, "awaiting_approval"))
    assert out.updates[0].values["status"] == "failed"
    assert out.updates[0].values["error"]["code"] == "invalid_result"


def answer(
    r: TaskRow, decision: str, *, kind: str = "approval", fail: bool = False
) -> HoldResolved:
    return HoldResolved(
        run_id=RUN,
        task_id=r.id,
        attempt=r.attempt,
        approval_id="ap-1",
        kind=kind,
        decision=decision,
        fail=fail,
        comment="ok by me",
    )


@pytest.mark.parametrize(
    ("kind", "decision"),
    [
        ("approval", "approved"),
        ("approval", "rejected"),
        ("approval", "expired"),
        ("in_doubt", "done"),
        ("in_doubt", "retry"),
    ],
)
def test_an_answer_dispatches_the_task_again_to_hear_it(kind: str, decision: str) -> None:
    r = row("a", "awaiting_approval", 1, input={"prompt": "clean up"})
    out = machine.resolve_hold("a", r, answer(r, decision, kind=kind))
    [dispatch] = out.dispatches
    assert (dispatch.attempt, dispatch.params, dispatch.reason) == (
        2,
        {"prompt": "clean up"},
        decision,
    )
    assert dispatch.params_ref is None
    assert [e.kind for e in out.events] == ["task.hold_resolved"]
    assert out.events[0].data["decision"] == decision
    assert out.events[0].data["comment"] == "ok by me"


def test_an_answer_to_claim_checked_params_dispatches_the_reference() -> None:
    r = row("a", "in_doubt", 3, input=None)
    [dispatch] = machine.resolve_hold("a", r, answer(r, "retry", kind="in_doubt")).dispatches
    assert dispatch.params is None
    assert dispatch.params_ref == machine.params_key(RUN, r.id)


def test_an_expired_approval_with_on_timeout_fail_fails_the_task() -> None:
    r = row("a", "awaiting_approval", 1)
    out = machine.resolve_hold("a", r, answer(r, "expired", fail=True))
    assert out.dispatches == []
    assert out.updates[0].values["error"]["code"] == machine.APPROVAL_TIMEOUT
    assert out.steps == [Failed("a")]
    instance = row("f", "awaiting_approval", 1, item_index=0)
    assert machine.resolve_hold("f", instance, answer(instance, "expired", fail=True)).steps == [
        InstanceFinished(instance.id)
    ]


def test_answers_that_no_longer_apply_are_ignored() -> None:
    r = row("a", "awaiting_approval", 2)
    assert machine.hold_ignore_reason("running", r, answer(r, "approved")) is None
    assert machine.hold_ignore_reason("cancelled", r, answer(r, "approved")) == "run_finished"
    stale = answer(row("a", "awaiting_approval", 1), "approved")
    assert machine.hold_ignore_reason("running", r, stale) == "not_held"
    redispatched = row("a", "ready", 3)
    assert machine.hold_ignore_reason("running", redispatched, answer(r, "approved")) == "not_held"


def test_a_result_for_a_held_task_changes_nothing() -> None:
    r = row("a", "awaiting_approval", 1)
    assert machine.ignore_reason("running", r, result(r)) == "task_finished"
