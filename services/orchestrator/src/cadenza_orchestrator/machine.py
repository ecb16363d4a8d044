"""The run state machine: small transition rules, each a pure function returning an
``Outcome``. See docs/orchestrator.md for the table of states, events and rules.

Rules read task rows (``TaskRow``) but never change them: the engine applies outcomes
through ``store`` and feeds follow-up steps back into the rules.

Task ids, rows and statuses: every spec task has one *node row* (``item_index`` NULL). A
fan-out task's node row aggregates its *instance rows* (``item_index`` 0..N-1): it is
``running`` (attempt 1, never sent to a worker itself) while they run and ends with the list
of their outputs, its one attempt result recorded at the fan-in.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cadenza_events import HoldResolved, TaskResult
from cadenza_state import RunStatus, TaskStatus
from cadenza_workflow import ExpressionError, evaluate_condition, evaluate_for_each, render

from .graph import Node, RunGraph, task_id_for
from .outcome import (
    HELD,
    OPEN,
    SETTLED,
    Advance,
    Attempt,
    Cached,
    CancelInstances,
    Dispatch,
    Event,
    Failed,
    FanIn,
    HoldRequest,
    InstanceFinished,
    NewTask,
    Outcome,
    Recover,
    RunChange,
    Settled,
    Start,
    TaskUpdate,
)
from .rows import TaskRow

S = TaskStatus

# Error codes the orchestrator itself produces (workers produce the others).
WORKER_LOST = "worker_lost"
BUDGET_EXCEEDED = "budget_exceeded"  # produced by workers; ends the run with its own status
TASK_FAILED = "task_failed"
OUTPUT_FAILED = "output_expression"
APPROVAL_TIMEOUT = "approval_timeout"

ACTIVE_RUN = frozenset({RunStatus.RUNNING.value, RunStatus.PAUSED.value})
"""Runs whose results still apply: a paused run's other tasks go on (only the tasks a budget
held wait for the resume)."""


def error_dict(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "retryable": False, **extra}


def expression_error(exc: ExpressionError, where: str) -> dict[str, Any]:
    """Expression errors fail a task without retry (docs/workflows.md)."""
    return error_dict(exc.code, f"{where}: {exc.message}", expression=exc.expression)


def params_key(run_id: str, task_id: str) -> str:
    """Object key of claim-checked params (the same for every dispatch of a task)."""
    return f"runs/{run_id}/tasks/{task_id}/params.json"


def output_key(run_id: str, task_id: str) -> str:
    """Object key of an output the orchestrator claim-checked (fan-in lists)."""
    return f"runs/{run_id}/tasks/{task_id}/output.json"


# -- planning -------------------------------------------------------------------------------


def plan(graph: RunGraph) -> Outcome:
    """``plan.requested`` on a pending run: one pending row per spec task, the run becomes
    ``running`` and every root (no needs, not a fallback) is advanced."""
    new = [
        NewTask(
            task_id=task_id_for(graph.run_id, n.id),
            node_id=n.id,
            item_index=None,
            status=S.PENDING,
            max_attempts=n.spec.retry.max_attempts,
        )
        for n in graph.nodes.values()
    ]
    return Outcome(
        new_tasks=new,
        run=RunChange(RunStatus.RUNNING),
        events=[Event("run.started", status=RunStatus.RUNNING, data={"tasks": len(new)})],
        steps=[Advance(nid) for nid in graph.roots],
    )


def reject_plan(error: dict[str, Any]) -> Outcome:
    """The stored spec or inputs do not validate (the gateway should have refused them):
    the run fails at once with the validation errors."""
    return Outcome(
        run=RunChange(RunStatus.FAILED, error=error),
        events=[Event("run.failed", status=RunStatus.FAILED, data={"error": error})],
    )


# -- starting tasks -------------------------------------------------------------------------


def advance(node: Node, row: TaskRow, rows: Mapping[str, TaskRow], graph: RunGraph) -> Outcome:
    """A pending task starts once its needs are settled (and, for a fallback, once it was
    triggered and every trigger not downstream of a failed one has finished). It is skipped
    when a need was skipped (unless ``run_if_skipped``), and a fallback is skipped when every
    task naming it finished without failing."""
    if row.status != S.PENDING:
        return Outcome()
    if any(rows[n].status not in SETTLED for n in node.needs):
        return Outcome()  # running, or failed and awaiting its fallback
    if node.spec.fallback:
        failed = [t for t in node.triggers if rows[t].status == S.FAILED]
        if any(rows[t].status in OPEN for t in graph.trigger_waits_on(node.id, failed)):
            return Outcome()
        if not failed:
            return skip(
                node.id, row, "not triggered: every task naming it finished without failing"
            )
    if not node.spec.run_if_skipped:
        skipped = [n for n in node.needs if rows[n].status == S.SKIPPED]
        if skipped:
            return skip(node.id, row, f"needs skipped task '{skipped[0]}'")
    return Outcome(steps=[Start(node.id)])


def skip(node_id: str, row: TaskRow, reason: str) -> Outcome:
    """A skipped task has output null and settles (its dependants decide for themselves)."""
    return Outcome(
        updates=[TaskUpdate(row.id, {"status": S.SKIPPED, "output": None})],
        events=[Event("task.skipped", row.id, node_id, S.SKIPPED, {"reason": reason})],
        steps=[Settled(node_id)],
    )


def start(
    node: Node,
    row: TaskRow,
    context: dict[str, Any],
    graph: RunGraph,
    now: datetime,
    *,
    cached: Cached | None = None,
) -> Outcome:
    """Start a task: a plain task evaluates ``when`` and renders its params; a fan-out task
    expands into one instance per ``for_each`` item. Expression errors fail the task. In a
    rerun or fork, a task whose recorded output is still valid (``cached``, under the same
    cache key) completes from it instead of running (:func:`reuse`)."""
    override = graph.replay.overrides.get(node.id)
    if cached is not None and cached.source == "override":
        # Replaced by hand: the task does not run, whatever its condition or inputs.
        return reuse(node.id, row, cached, cache_key(node, {"output": cached.output}), now)
    if node.fan_out:
        return _expand(node, row, context, graph, now, cached)
    try:
        runnable = evaluate_condition(node.spec.when, context)
        params = render_params(node, context) if runnable else None
    except ExpressionError as exc:
        return fail_task(node.id, row, expression_error(exc, f"task '{node.id}'"))
    if params is None:
        return skip(node.id, row, "when is false")
    key = cache_key(node, params, override)
    if reusable(cached, key):
        assert cached is not None
        return reuse(node.id, row, cached, key, now)
    dispatch = _first_dispatch(row.id, node, row.attempt + 1, params, override, key)
    return Outcome(dispatches=[dispatch])


def _first_dispatch(
    task_id: str,
    node: Node,
    attempt: int,
    params: dict[str, Any],
    override: Mapping[str, Any] | None,
    key: str | None = None,
) -> Dispatch:
    """A task's dispatch with its cache key and a fork's agent overrides."""
    return Dispatch(
        task_id,
        node.id,
        attempt,
        params=params,
        cache_key=key or cache_key(node, params, override),
        overrides=dict(override) if override else None,
    )


def cache_key(node: Node, params: Any, override: Mapping[str, Any] | None = None) -> str:
    """What determines a task's output, hashed: its kind, tool or pinned agent
    (``name@version``), its rendered params (the resolved inputs and the upstream outputs
    it reads, its rendered prompt) and a fork's agent overrides (system prompt, model).
    Retry, timeout and wiring do not change what a task computes, so they are left out."""
    material = {
        "v": 1,
        "kind": node.spec.kind,
        "tool": node.spec.tool,
        "agent": node.spec.agent,
        "params": params,
        "override": dict(override) if override else None,
    }
    data = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def reusable(cached: Cached | None, key: str) -> bool:
    """A recorded output is valid for a task computed under ``key``: it was recorded under
    the same key, or it is reused unconditionally (replaced by hand, or keyless)."""
    return cached is not None and (cached.cache_key is None or cached.cache_key == key)


def reuse(node_id: str, row: TaskRow, cached: Cached, key: str, now: datetime) -> Outcome:
    """``task.reused``: the task completes with a recorded output — no dispatch, no model
    or tool call (``attempt`` stays 0) — and its dependants go on as after a success."""
    values = {
        "status": S.SUCCEEDED,
        "output": None if cached.output_ref else cached.output,
        "output_ref": cached.output_ref,
        "error": None,
        "cache_key": key,
        "reused_from": cached.task_id or cached.source,
        "started_at": now,
        "finished_at": now,
    }
    data: dict[str, Any] = {"source": cached.source, "cache_key": key}
    if cached.task_id is not None:
        data["from_task"] = cached.task_id
    return Outcome(
        updates=[TaskUpdate(row.id, values)],
        events=[Event("task.reused", row.id, node_id, S.SUCCEEDED, data)],
        steps=[Settled(node_id)],
    )


def render_params(node: Node, context: Mapping[str, Any]) -> dict[str, Any]:
    """The task's ``with``, rendered; an agent task's rendered ``prompt`` rides along."""
    params: dict[str, Any] = render(node.spec.with_, context)
    if node.spec.prompt is not None:
        params = {**params, "prompt": render(node.spec.prompt, context)}
    return params


def _expand(
    node: Node,
    row: TaskRow,
    context: dict[str, Any],
    graph: RunGraph,
    now: datetime,
    cached: Cached | None = None,
) -> Outcome:
    """Fan-out: evaluate ``for_each`` once; each item gets an instance row, skipped when its
    ``when`` is false. The first expression error fails the whole task before anything runs.
    The task's cache key covers every item's params: reused, it creates no instances."""
    assert node.spec.for_each is not None
    try:
        items = evaluate_for_each(node.spec.for_each, context)
    except ExpressionError as exc:
        return fail_task(node.id, row, expression_error(exc, f"task '{node.id}' for_each"))
    rendered: list[dict[str, Any] | None] = []
    for index, item in enumerate(items):
        ctx = {**context, "item": item, "index": index}
        try:
            runnable = evaluate_condition(node.spec.when, ctx)
            rendered.append(render_params(node, ctx) if runnable else None)
        except ExpressionError as exc:
            where = f"task '{node.id}' item {index}"
            return fail_task(node.id, row, expression_error(exc, where) | {"item_index": index})
    override = graph.replay.overrides.get(node.id)
    key = cache_key(node, rendered, override)
    if reusable(cached, key):
        assert cached is not None
        return reuse(node.id, row, cached, key, now)
    out = Outcome()
    for index, params in enumerate(rendered):
        tid = task_id_for(graph.run_id, node.id, index)
        status = S.PENDING if params is not None else S.SKIPPED
        out.new_tasks.append(NewTask(tid, node.id, index, status, node.spec.retry.max_attempts))
        if params is not None:
            out.dispatches.append(_first_dispatch(tid, node, 1, params, override))
    open_count = len(out.dispatches)
    # The fan-out row counts as dispatched once (as its instances); the fan-in records that
    # attempt's result, so every task row ends with exactly one recorded result.
    progress = {"items": len(items), "open": open_count}
    values = {
        "status": S.RUNNING,
        "attempt": 1,
        "input": progress,
        "started_at": now,
        "cache_key": key,
    }
    out.updates.append(TaskUpdate(row.id, values))
    out.events.append(
        Event(
            "task.expanded", row.id, node.id, S.RUNNING, {"items": len(items), "open": open_count}
        )
    )
    if open_count == 0:
        out.steps.append(FanIn(node.id))
    return out


# -- results ---------------------------------------------------------------------------------


def ignore_reason(run_status: str, row: TaskRow, result: TaskResult) -> str | None:
    """Why a (first-seen) result changes nothing, or None when it applies. A ``cancelled``
    result for a cancelled run is applied by ``cancelled_result``."""
    if result.attempt != row.attempt:
        return "stale_attempt"
    if run_status == RunStatus.CANCELLED:
        return None if result.status == "cancelled" and row.status in OPEN else "run_cancelled"
    if run_status not in ACTIVE_RUN:
        return "run_finished"
    if row.status not in OPEN:
        return "task_finished"
    return None


def apply_result(
    node_id: str, row: TaskRow, result: TaskResult, *, max_handoffs: int = 3
) -> Outcome:
    """The current attempt of an open task finished: succeeded stores the output; failed (or
    cancelled while the run goes on) fails the task — the worker already spent its retries;
    a handoff sends the task on to another agent (:func:`hand_off`)."""
    if result.status == "succeeded" and result.handoff is not None:
        return hand_off(node_id, row, result, max_handoffs)
    if result.status in ("awaiting_approval", "in_doubt"):
        return hold_task(node_id, row, result)
    base: dict[str, Any] = {"finished_at": result.finished_at, "worker_id": result.worker_id}
    if result.started_at is not None and row.started_at is None:
        base["started_at"] = result.started_at
    instance = row.item_index is not None
    if result.status == "succeeded":
        values = base | {
            "status": S.SUCCEEDED,
            "output": None if result.output_ref else result.output,
            "output_ref": result.output_ref,
            "error": None,
        }
        data = {"attempt": result.attempt, "tries": result.tries}
        return Outcome(
            updates=[TaskUpdate(row.id, values)],
            events=[Event("task.succeeded", row.id, node_id, S.SUCCEEDED, data)],
            steps=[InstanceFinished(row.id) if instance else Settled(node_id)],
        )
    error = (
        result.error.model_dump(exclude_none=True)
        if result.error is not None
        else error_dict(result.status, f"task reported {result.status} without an error")
    )
    if pauses(error):
        return pause_task(node_id, row, error, base)
    out = fail_task(node_id, row, error, base)
    out.steps = [InstanceFinished(row.id) if instance else Failed(node_id)]
    return out


def hand_off(node_id: str, row: TaskRow, result: TaskResult, max_handoffs: int) -> Outcome:
    """An agent handed its task to another agent: the task stays open and is dispatched
    again — a new attempt — to that agent, with the conversation so far in its params
    (``handoff``). Past ``max_handoffs`` handoffs of one task, the task fails."""
    handoff = result.handoff
    assert handoff is not None
    params = dict(row.input or {})
    previous = params.get("handoff")
    depth = (int(previous.get("depth", 0)) if isinstance(previous, dict) else 0) + 1
    if depth > max_handoffs:
        message = (
            f"agent {handoff.from_agent!r} tried to hand off to {handoff.agent!r}: "
            f"more than {max_handoffs} handoff(s) for one task"
        )
        out = fail_task(node_id, row, error_dict("handoff_depth_exceeded", message))
        if row.item_index is not None:
            out.steps = [InstanceFinished(row.id)]
        return out
    params["handoff"] = {
        "agent": handoff.agent,
        "from": handoff.from_agent,
        "reason": handoff.reason,
        "messages": handoff.messages,
        "depth": depth,
    }
    data = {"from": handoff.from_agent, "to": handoff.agent, "reason": handoff.reason}
    return Outcome(
        events=[Event("task.handoff", row.id, node_id, S.RUNNING, data | {"depth": depth})],
        dispatches=[Dispatch(row.id, node_id, row.attempt + 1, params=params, reason="handoff")],
    )


def approval_id(task_id: str, attempt: int, call_index: int, kind: str) -> str:
    """The same id for every delivery of one hold (results are at-least-once)."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"cadenza:hold:{task_id}:{attempt}:{call_index}:{kind}")
    )


def hold_task(node_id: str, row: TaskRow, result: TaskResult) -> Outcome:
    """A worker held a tool call instead of making it: the task waits for a person
    (``awaiting_approval``, or ``in_doubt`` for an effect that may have happened) and the
    call goes to the approvals inbox. No worker keeps it; an answer dispatches it again."""
    hold = result.hold
    if hold is None:  # a worker bug: a held status without the call
        error = error_dict("invalid_result", f"task reported {result.status} without a hold")
        return fail_task(node_id, row, error)
    status = S.AWAITING_APPROVAL if hold.kind == "approval" else S.IN_DOUBT
    aid = approval_id(row.id, result.attempt, hold.call_index, hold.kind)
    values: dict[str, Any] = {"status": status, "worker_id": result.worker_id}
    if result.started_at is not None and row.started_at is None:
        values["started_at"] = result.started_at
    data = {
        "approval_id": aid,
        "kind": hold.kind,
        "tool": hold.tool,
        "call_index": hold.call_index,
        "rule": hold.rule,
        "attempt": result.attempt,
    }
    return Outcome(
        updates=[TaskUpdate(row.id, values)],
        events=[Event(f"task.{status}", row.id, node_id, status, data)],
        holds=[HoldRequest(aid, row.id, node_id, result.attempt, hold)],
    )


def resolve_hold(node_id: str, row: TaskRow, command: HoldResolved) -> Outcome:
    """Someone answered a held task (or its approval timed out): dispatch it again — a new
    attempt that reads the answer and resumes at the held call (made, refused, or given the
    operator's output) — or, for an expired approval whose policy says so, fail it."""
    data = {
        "approval_id": command.approval_id,
        "kind": command.kind,
        "decision": command.decision,
        **({"comment": command.comment} if command.comment else {}),
    }
    event = Event("task.hold_resolved", row.id, node_id, S.READY, data)
    if command.fail:
        message = f"the held call was not answered in time (approval {command.approval_id})"
        out = fail_task(node_id, row, error_dict(APPROVAL_TIMEOUT, message))
        out.events.insert(0, Event("task.hold_resolved", row.id, node_id, S.FAILED, data))
        if row.item_index is not None:
            out.steps = [InstanceFinished(row.id)]
        return out
    ref = None if row.input is not None else params_key(row.run_id, row.id)
    dispatch = Dispatch(
        row.id, node_id, row.attempt + 1, params=row.input, params_ref=ref, reason=command.decision
    )
    return Outcome(events=[event], dispatches=[dispatch])


def hold_ignore_reason(run_status: str, row: TaskRow, command: HoldResolved) -> str | None:
    """Why an answer changes nothing (a duplicate, a stale attempt, a finished run)."""
    if run_status not in ACTIVE_RUN:
        return "run_finished"
    if row.status not in HELD or row.status == S.PAUSED or row.attempt != command.attempt:
        return "not_held"
    return None


def fail_task(
    node_id: str, row: TaskRow, error: dict[str, Any], extra: Mapping[str, Any] | None = None
) -> Outcome:
    """A task (or instance) failed for good."""
    values = dict(extra or {}) | {"status": S.FAILED, "error": error}
    steps = [] if row.item_index is not None else [Failed(node_id)]
    return Outcome(
        updates=[TaskUpdate(row.id, values)],
        events=[Event("task.failed", row.id, node_id, S.FAILED, {"error": error})],
        steps=list(steps),
    )


def cancelled_result(node_id: str, row: TaskRow, aggregate: TaskRow | None) -> Outcome:
    """A run was cancelled and a worker stopped this task: the task is ``cancelled`` (and so
    is its fan-out row, which the gateway leaves alone because it is ``running``)."""
    out = Outcome(
        updates=[TaskUpdate(row.id, {"status": S.CANCELLED})],
        events=[Event("task.cancelled", row.id, node_id, S.CANCELLED)],
    )
    if aggregate is not None and aggregate.status in OPEN:
        out.updates.append(TaskUpdate(aggregate.id, {"status": S.CANCELLED}))
    return out


def instance_finished(node_id: str, aggregate: TaskRow, instance: TaskRow) -> Outcome:
    """Fan-in bookkeeping: a failed instance fails the task at once (its other instances are
    cancelled, its fallback runs once); the last instance to finish triggers the fan-in."""
    if aggregate.status != S.RUNNING:
        return Outcome()
    if instance.status == S.FAILED:
        error = dict(instance.error or {}) | {"item_index": instance.item_index}
        out = fail_task(node_id, aggregate, error)
        out.cancel_instances.append(CancelInstances(node_id))
        out.attempts.append(_fan_in_attempt(aggregate, S.FAILED, error))
        return out
    progress = dict(aggregate.input or {})
    progress["open"] = max(0, int(progress.get("open", 1)) - 1)
    out = Outcome(updates=[TaskUpdate(aggregate.id, {"input": progress})])
    if progress["open"] == 0:
        out.steps.append(FanIn(node_id))
    return out


def fan_in(node_id: str, aggregate: TaskRow, outputs: list[Any], statuses: list[str]) -> Outcome:
    """All instances finished: the task's output is their outputs in index order (null for
    skipped ones); an empty fan-out succeeds with ``[]``; all skipped → skipped."""
    if statuses and all(s == S.SKIPPED for s in statuses):
        out = skip(node_id, aggregate, "every instance was skipped")
        out.attempts.append(_fan_in_attempt(aggregate, S.SKIPPED))
        return out
    return Outcome(
        updates=[TaskUpdate(aggregate.id, {"status": S.SUCCEEDED, "output": outputs})],
        attempts=[_fan_in_attempt(aggregate, S.SUCCEEDED)],
        events=[
            Event("task.succeeded", aggregate.id, node_id, S.SUCCEEDED, {"items": len(outputs)})
        ],
        steps=[Settled(node_id)],
    )


def _fan_in_attempt(
    aggregate: TaskRow, status: str, error: dict[str, Any] | None = None
) -> Attempt:
    return Attempt(aggregate.id, aggregate.attempt, status, error, aggregate.started_at)


# -- propagation -----------------------------------------------------------------------------


def settled(node: Node, row: TaskRow, triggers: Mapping[str, TaskRow]) -> Outcome:
    """A settled task wakes its dependants and its fallback (which may now be skipped); a
    fallback that succeeded recovers the tasks that failed over to it, and a fallback
    skipped although a task failed over to it (a skipped need, ``when`` false) cannot
    recover it: the run fails."""
    if node.spec.fallback and row.status == S.SKIPPED:
        failed_triggers = [t for t in node.triggers if triggers[t].status == S.FAILED]
        if failed_triggers:
            first = failed_triggers[0]
            cause = triggers[first].error
            message = (
                f"task '{first}' failed and its fallback '{node.id}' was skipped: "
                f"{(cause or {}).get('message', 'no message')}"
            )
            return fail_run(error_dict(TASK_FAILED, message, task=first, cause=cause))
    steps: list[Any] = [Advance(d) for d in node.dependants]
    if node.spec.on_failure is not None:
        steps.append(Advance(node.spec.on_failure))
    if node.spec.fallback and row.status in (S.SUCCEEDED, S.RECOVERED):
        steps.append(Recover(node.id))
    return Outcome(steps=steps)


def failed(node: Node, row: TaskRow, fallback: TaskRow | None) -> Outcome:
    """A task failed for good: with ``on_failure`` its fallback takes over (if the fallback
    already succeeded for another task, this one is recovered at once); without one — or
    when a fallback itself fails — the run fails. A task stopped by a run or tenant budget
    ends the run as ``budget_exceeded`` even with a fallback (the fallback could only spend
    the same exhausted budget); one stopped by its own agent's budget may fall back."""
    cause = row.error or {}
    if cause.get("code") == BUDGET_EXCEEDED:
        scope = (cause.get("details") or {}).get("budget", "")
        if node.spec.on_failure is None or fallback is None or scope != "task":
            return exceed_budget(node.id, cause)
    if (
        node.spec.on_failure is None
        or fallback is None
        or fallback.status
        not in OPEN
        | {
            S.SUCCEEDED,
            S.RECOVERED,
        }
    ):
        message = f"task '{node.id}' failed: {(row.error or {}).get('message', 'no message')}"
        return fail_run(error_dict(TASK_FAILED, message, task=node.id, cause=row.error))
    if fallback.status in (S.SUCCEEDED, S.RECOVERED):
        return recover(node.spec.on_failure, fallback, [(node.id, row)])
    return Outcome(steps=[Advance(node.spec.on_failure)])


def recover(fallback_id: str, fallback: TaskRow, triggers: list[tuple[str, TaskRow]]) -> Outcome:
    """A fallback succeeded: every task that failed over to it becomes ``recovered`` with
    the fallback's output, and its dependants run as if it had succeeded."""
    out = Outcome()
    for node_id, row in triggers:
        if row.status != S.FAILED:
            continue
        values = {
            "status": S.RECOVERED,
            "output": fallback.output,
            "output_ref": fallback.output_ref,
        }
        out.updates.append(TaskUpdate(row.id, values))
        out.events.append(
            Event("task.recovered", row.id, node_id, S.RECOVERED, {"fallback": fallback_id})
        )
        out.steps.append(Settled(node_id))
    return out


# -- the run ---------------------------------------------------------------------------------


def fail_run(error: dict[str, Any]) -> Outcome:
    """The run fails: every open task is cancelled and running workers are told to stop."""
    return Outcome(
        run=RunChange(RunStatus.FAILED, error=error),
        events=[Event("run.failed", status=RunStatus.FAILED, data={"error": error})],
    )


def exceed_budget(node_id: str, cause: dict[str, Any]) -> Outcome:
    """A budget ran out: the run stops as ``budget_exceeded`` — open tasks are cancelled and
    running workers told to stop, like a failure — and its error names the budget, its limit
    and what was spent (the worker's ``details``)."""
    message = f"task '{node_id}' stopped: {cause.get('message', 'a budget ran out')}"
    error = error_dict(BUDGET_EXCEEDED, message, task=node_id, cause=cause)
    if cause.get("details"):
        error["budget"] = cause["details"]
    status = RunStatus.BUDGET_EXCEEDED
    return Outcome(
        run=RunChange(status, error=error),
        events=[Event("run.budget_exceeded", status=status, data={"error": error})],
    )


def pauses(error: Mapping[str, Any]) -> bool:
    """A run or tenant budget with ``on_exceeded: pause`` refused the task's next LLM call
    (an agent's own ``task`` budget always stops: raising it means a new agent version)."""
    details = error.get("details") or {}
    return (
        error.get("code") == BUDGET_EXCEEDED
        and details.get("on_exceeded") == "pause"
        and details.get("budget") != "task"
    )


def pause_task(
    node_id: str, row: TaskRow, cause: dict[str, Any], extra: Mapping[str, Any]
) -> Outcome:
    """A budget with ``on_exceeded: pause`` ran out: the task is held (``paused``, not
    failed: no worker keeps it, the refused call reserved nothing) and the run is
    ``paused`` with the budget facts in its ``error`` until an operator resumes it. The run's
    other tasks go on; each that hits the budget is held the same way."""
    budget = dict(cause.get("details") or {})
    message = f"task '{node_id}' paused: {cause.get('message', 'a budget ran out')}"
    run_error = error_dict(
        BUDGET_EXCEEDED, message, task=node_id, cause=cause, budget=budget, paused=True
    )
    values = dict(extra) | {"status": S.PAUSED, "error": cause}
    values.pop("finished_at", None)  # not finished: it runs again on resume
    data = {"attempt": row.attempt, "budget": budget}
    return Outcome(
        updates=[TaskUpdate(row.id, values)],
        events=[
            Event("task.paused", row.id, node_id, S.PAUSED, data),
            Event("run.paused", status=RunStatus.PAUSED, data={"task": node_id, "budget": budget}),
        ],
        run=RunChange(RunStatus.PAUSED, error=run_error),
    )


def raised_budget(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ``budget`` column after a resume that raises its limits: the request's
    limits stay as they were, the operator's go under ``raised`` and replace the run's
    effective limit per field (``cadenza_workflow.run_budget``)."""
    out = dict(current or {})
    raised = dict(out.get("raised") or {})
    raised.update({k: v for k, v in new.items() if v is not None})
    out["raised"] = raised
    return out


def resume_run(
    paused: list[TaskRow],
    *,
    requested_by: str | None,
    reason: str | None,
    budget: Mapping[str, Any] | None,
) -> Outcome:
    """An operator resumed a paused run (after raising the limit that held it): the run is
    ``running`` again, its error cleared, and every held task is dispatched again — a new
    attempt that resumes the agent from its checkpoint, so calls made before the pause are
    not made again."""
    data: dict[str, Any] = {"requested_by": requested_by, "tasks": [r.node_id for r in paused]}
    if reason:
        data["reason"] = reason
    if budget:
        data["budget"] = dict(budget)
    dispatches = [
        Dispatch(
            row.id,
            row.node_id,
            row.attempt + 1,
            params=row.input,
            params_ref=None if row.input is not None else params_key(row.run_id, row.id),
            reason="resumed",
        )
        for row in paused
    ]
    return Outcome(
        run=RunChange(RunStatus.RUNNING),
        events=[Event("run.resumed", status=RunStatus.RUNNING, data=data)],
        dispatches=dispatches,
    )


def cancel_run(*, requested_by: str | None, reason: str | None) -> Outcome:
    """Someone cancelled the run: every open task is cancelled and running workers are told
    to stop (their late ``cancelled`` results change nothing)."""
    data: dict[str, Any] = {"requested_by": requested_by}
    if reason:
        data["reason"] = reason
    return Outcome(
        run=RunChange(RunStatus.CANCELLED),
        events=[Event("run.cancelled", status=RunStatus.CANCELLED, data=data)],
    )


def finish_run(graph: RunGraph, context: Mapping[str, Any]) -> Outcome:
    """Every task finished: render the workflow ``output`` (null without one). An output
    expression that fails fails the run, naming the expression."""
    try:
        output = render(graph.spec.output, context)
    except ExpressionError as exc:
        error = error_dict(
            OUTPUT_FAILED,
            f"run output expression failed: {exc.message}",
            expression=exc.expression,
        )
        return fail_run(error)
    return Outcome(
        run=RunChange(RunStatus.SUCCEEDED, output=output),
        events=[Event("run.succeeded", status=RunStatus.SUCCEEDED)],
    )


# -- the sweeper -----------------------------------------------------------------------------


def redispatch(node_id: str, row: TaskRow, *, max_dispatches: int, reason: str) -> Outcome:
    """A dispatched task lost its worker (or was never picked up): dispatch it again with
    ``attempt + 1`` and the same params, or — after ``max_dispatches`` — fail it with
    ``worker_lost``. The lost attempt is recorded so a late result for it is a duplicate."""
    lost = error_dict(WORKER_LOST, f"attempt {row.attempt} lost: {reason}")
    attempts = [Attempt(row.id, row.attempt, "lost", lost)]
    if row.attempt >= max_dispatches:
        message = f"no worker finished the task in {row.attempt} dispatches ({reason})"
        out = fail_task(node_id, row, error_dict(WORKER_LOST, message))
        out.attempts = attempts
        if row.item_index is not None:
            out.steps = [InstanceFinished(row.id)]
        return out
    ref = None if row.input is not None else params_key(row.run_id, row.id)
    dispatch = Dispatch(
        row.id, node_id, row.attempt + 1, params=row.input, params_ref=ref, reason=reason
    )
    return Outcome(dispatches=[dispatch], attempts=attempts)
