"""Batches applied without a transaction (PostgreSQL): a batch of plan.requested or of
task.result reads its runs and rows with no lock and writes everything as ONE statement
that holds only while no run's ``version`` moved since the read. When a run was written
between the read and the write — a command, the sweeper, or a second orchestrator during a
rebalance — nothing is written and the batch is applied the locked way, which sees what
happened: every plan and every result is applied once, and nothing is half-written."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from cadenza_events import Envelope, TaskReady, TaskResult
from cadenza_orchestrator import GraphCache, metrics, store
from cadenza_orchestrator.engine import Effects
from cadenza_orchestrator.handlers import RunHandlers
from cadenza_orchestrator.sweeper import Sweeper
from cadenza_state import OutboxMessage, direct
from orchestrator_stack import INTEGRATION, Stack
from sqlalchemy import func, or_, select
from support import assert_eventually
from support.statements import watched as watched_statements

pytestmark = pytest.mark.parametrize(
    "stack", [pytest.param(INTEGRATION, marks=pytest.mark.integration)], indirect=True
)

THREE = {
    "name": "three",
    "tasks": [{"id": n, "tool": "noop"} for n in ("a", "b", "c")],
}


WIDE = {  # its 250 task rows and outbox rows go by COPY (cadenza_state.bulk)
    "name": "wide",
    "tasks": [{"id": "each", "tool": "noop", "for_each": "list(range(250))"}],
}
SPECS = {"wide": WIDE, "three": THREE}
TWO_STEPS = {
    "name": "two-steps",
    "tasks": [{"id": "a", "tool": "noop"}, {"id": "b", "tool": "noop", "needs": ["a"]}],
}


async def pending_run(stack: Stack, spec: dict[str, Any] = THREE) -> str:
    """A run the way the gateway inserts it, its plan.requested NOT published (the test
    hands it to the handler itself)."""
    return await stack.submit(spec, publish_times=0)


def watched(stack: Stack) -> AbstractContextManager[tuple[list[str], list[str]]]:
    """The statements this task sends, and the transactions asyncpg begins for it."""
    return watched_statements(stack.resources.state.engine)


async def ready_rows(stack: Stack, run_id: str) -> int:
    """task.ready rows staged for this run's tasks (keyed by task id, or by the run when a
    few are made ready together)."""
    async with stack.resources.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.topic.like("%task.ready"),
                or_(OutboxMessage.key == run_id, OutboxMessage.key.like(f"{run_id}.%")),
            )
        )
    return int(count or 0)


def locked_again(event: str = "plan.requested") -> float:
    return sum(
        metrics.BATCHES_LOCKED_AGAIN.labels(event, reason)._value.get()
        for reason in ("changed", "conflict")
    )


def hold_by_hand(stack: Stack) -> list[TaskReady]:
    """The fake worker answers nothing: the test answers each dispatched task itself."""
    held: list[TaskReady] = []

    def script(ready: TaskReady, params: dict[str, Any]) -> None:
        held.append(ready)

    stack.worker.script = script
    return held


def succeeded(ready: TaskReady, output: Any = 1) -> Envelope[TaskResult]:
    """The dispatched attempt's success (a re-dispatch's too)."""
    result = TaskResult(
        run_id=ready.run_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        status="succeeded",
        output=output,
    )
    return Envelope(payload=result, source="/tests", plan_id=ready.run_id, tenant_id="acme")


async def version_of(stack: Stack, run_id: str) -> int:
    return (await stack.run(run_id)).version


async def bump(stack: Stack, run_id: str, status: str | None = None) -> None:
    """Write the run the way every writer of its state does: its version moves on."""
    async with stack.resources.sessions() as other, other.begin():
        await direct.execute(
            other,
            "UPDATE runs SET version = version + 1, status = coalesce($2, status) WHERE id = $1",
            run_id,
            status,
        )


def silent_worker(stack: Stack) -> None:
    stack.worker.script = lambda ready, params: None  # tasks stay as the plan left them


@pytest.mark.parametrize("carries_row", [True, False], ids=["carried", "read"])
async def test_a_plan_is_one_statement_and_no_transaction(stack: Stack, carries_row: bool) -> None:
    """The gateway's plan.requested carries the new run's row: nothing is read, and ONE
    guarded statement writes the plan. An older writer's (or a rerun's, a fork's) carries
    none: the run is read first, without a lock."""
    silent_worker(stack)
    run_id = await pending_run(stack)
    started = metrics.RUNS_STARTED._value.get()
    carried = metrics.RUN_MEMORY.labels("carried")._value.get()
    with watched(stack) as (statements, begun):
        plan = stack.plan_of(run_id, THREE, carries_row=carries_row)
        await stack.orchestrator.handlers.handle_batch([plan])
    assert begun == []  # no BEGIN, so no COMMIT either
    if not carries_row:
        read = statements.pop(0)
        assert read.startswith("SELECT runs.")
        assert "FOR UPDATE" not in read
    assert len(statements) == 1, statements
    assert statements[0].startswith("WITH w0 AS (INSERT INTO tasks")
    assert "cadenza_expect_rows" in statements[0]
    assert metrics.RUN_MEMORY.labels("carried")._value.get() == carried + carries_row
    assert (await stack.run(run_id)).status == "running"
    assert await version_of(stack, run_id) == 1
    assert {n: t.status for n, t in (await stack.tasks(run_id)).items()} == {
        "a": "ready",
        "b": "ready",
        "c": "ready",
    }
    assert await ready_rows(stack, run_id) == 3
    assert metrics.RUNS_STARTED._value.get() == started + 1


async def test_turned_off_a_plan_takes_the_runs_lock_in_a_transaction(stack: Stack) -> None:
    await stack.restart_orchestrator(unlocked_batches=False)
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS, publish_times=0)
    with watched(stack) as (statements, begun):
        await stack.orchestrator.handlers.handle_batch([stack.plan_of(run_id, TWO_STEPS)])
    assert begun == ["BEGIN"]
    assert "FOR UPDATE" in statements[0]
    assert (await stack.run(run_id)).status == "running"
    assert await version_of(stack, run_id) == 1  # the locked way moves it on too
    await assert_eventually(lambda: len(held) == 1)
    with watched(stack) as (statements, begun):
        await stack.orchestrator.handlers.handle_batch([succeeded(held[0])])
    assert begun == ["BEGIN"]
    assert "FOR UPDATE" in statements[0]
    assert await version_of(stack, run_id) == 2  # a result that changed no run column too


def changing_after_read(stack: Stack, change: Callable[[str], Any]) -> Any:
    """``store.read_runs`` that lets ``change`` act on each run right after reading it."""
    real = store.read_runs

    async def read_then_change(session: Any, run_ids: Any, **kwargs: Any) -> Any:
        runs = await real(session, run_ids, **kwargs)
        for run_id in runs:
            await change(run_id)
        return runs

    return read_then_change


@pytest.mark.parametrize("spec", ["three", "wide"])
async def test_a_run_cancelled_after_its_read_is_not_planned(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, spec: str
) -> None:
    """The run is cancelled between the unlocked read and the write: the guard fails, the
    statement writes nothing — nor do the COPYs of a wide plan, which ran in the
    transaction they began — and the locked way finds the run cancelled."""
    run_id = await pending_run(stack, SPECS[spec])

    async def cancel(rid: str) -> None:
        await bump(stack, rid, "cancelled")

    monkeypatch.setattr(store, "read_runs", changing_after_read(stack, cancel))
    before, ignored = locked_again(), metrics.PLANS_IGNORED.labels("duplicate")._value.get()
    started = metrics.RUNS_STARTED._value.get()
    plan = stack.plan_of(run_id, SPECS[spec], carries_row=False)
    await stack.orchestrator.handlers.handle_batch([plan])
    assert metrics.BATCHES_LOCKED_AGAIN.labels("plan.requested", "changed")._value.get() >= 1
    assert locked_again() == before + 1
    assert metrics.PLANS_IGNORED.labels("duplicate")._value.get() == ignored + 1
    assert metrics.RUNS_STARTED._value.get() == started  # undone: never counted
    assert (await stack.run(run_id)).status == "cancelled"
    assert await stack.tasks(run_id) == {}
    assert await ready_rows(stack, run_id) == 0


async def test_a_carried_plan_of_a_run_written_meanwhile_is_applied_locked(
    stack: Stack,
) -> None:
    """The row a plan carries is the run as the gateway wrote it. A run cancelled before
    its plan (the plan's send failed and the relay sent it after the cancel's), or a plan
    delivered again after it was applied: the row's version moved, the guard fails, and
    the locked way sees the run as it is."""
    run_id = await pending_run(stack)
    await bump(stack, run_id, "cancelled")
    before, ignored = locked_again(), metrics.PLANS_IGNORED.labels("duplicate")._value.get()
    await stack.orchestrator.handlers.handle_batch([stack.plan_of(run_id, THREE)])
    assert locked_again() == before + 1
    assert metrics.PLANS_IGNORED.labels("duplicate")._value.get() == ignored + 1
    assert (await stack.run(run_id)).status == "cancelled"
    assert await stack.tasks(run_id) == {}
    assert await ready_rows(stack, run_id) == 0

    planned = await pending_run(stack)
    silent_worker(stack)
    await stack.orchestrator.handlers.handle_batch([stack.plan_of(planned, THREE)])
    # Delivered again, to an orchestrator that did not plan it (a restart, a rebalance):
    # one that did holds the run and ignores the plan on what it holds.
    fresh = RunHandlers(stack.resources, stack.settings, GraphCache())
    await fresh.handle_batch([stack.plan_of(planned, THREE)])
    assert locked_again() == before + 2
    assert metrics.PLANS_IGNORED.labels("duplicate")._value.get() == ignored + 2
    assert sorted(await stack.tasks(planned)) == ["a", "b", "c"]
    assert await ready_rows(stack, planned) == 3


async def test_a_carried_plan_dispatches_the_params_a_read_one_does(stack: Stack) -> None:
    """The row travels with its documents in the key order the row reads back in: a plan
    from the event dispatches params (and so agent prompts, cassette keys) in exactly the
    order a plan from the row does."""
    spec = {
        "name": "ordered",
        "inputs": {"q": {"type": "object"}},
        "tasks": [
            {
                "id": "t",
                "tool": "transform",
                "with": {"zeta": 1, "alpha": {"yy": 2, "b": 3}, "mid": "${{ inputs.q }}"},
            }
        ],
    }
    held = hold_by_hand(stack)
    inputs = {"q": {"second": 1, "a": 2}}
    from_event = await stack.submit(spec, inputs, publish_times=0)
    from_row = await stack.submit(spec, inputs, publish_times=0)
    await stack.orchestrator.handlers.handle_batch([stack.plan_of(from_event, spec, inputs)])
    await stack.orchestrator.handlers.handle_batch(
        [stack.plan_of(from_row, spec, inputs, carries_row=False)]
    )
    await assert_eventually(lambda: len(held) == 2)
    params = {ready.run_id: ready.params for ready in held}
    assert json.dumps(params[from_event]) == json.dumps(params[from_row])
    assert list(params[from_event]) == ["mid", "zeta", "alpha"]  # jsonb: shorter keys first


@pytest.mark.parametrize("carries_row", [True, False], ids=["carried", "read"])
async def test_two_orchestrators_planning_one_run_plan_it_once(
    stack: Stack, carries_row: bool
) -> None:
    """A rebalance hands the same plan.requested to two orchestrators, and both take the
    run for pending (read, or as the plan carries it): one statement wins, the other fails
    whole and its orchestrator, locked, finds the run planned. One set of task rows, one
    dispatch each."""
    run_id = await pending_run(stack)
    both_read = asyncio.Barrier(2)
    real = store.read_runs

    calls = 0

    async def read_together(session: Any, run_ids: Any, **kwargs: Any) -> Any:
        nonlocal calls
        runs = await real(session, run_ids, **kwargs)
        calls += 1
        if calls <= 2:  # the two plans; the results that follow go their way
            await both_read.wait()  # neither writes before both have read it pending
        return runs

    first = stack.orchestrator.handlers
    second = RunHandlers(stack.resources, stack.settings, GraphCache())
    before = locked_again()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "read_runs", read_together)
        plan = stack.plan_of(run_id, THREE, carries_row=carries_row)
        await asyncio.gather(first.handle_batch([plan]), second.handle_batch([plan]))
    assert locked_again() == before + 1
    assert sorted(await stack.tasks(run_id)) == ["a", "b", "c"]
    assert await ready_rows(stack, run_id) == 3
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded"
    assert sorted(a.attempt for a in await stack.attempts(run_id)) == [1, 1, 1]


# -- results -------------------------------------------------------------------------------


def memory_off(handlers: RunHandlers) -> RunHandlers:
    handlers.memory.clear()
    handlers.memory.max_rows = 0
    return handlers


async def dispatched_a(stack: Stack) -> tuple[str, list[TaskReady]]:
    """A two-step run planned, its `a` dispatched and held; the run then forgotten by the
    orchestrator's memory, which is turned off: its batches read the run and the rows
    they need (test_run_memory.py has those that read nothing, and the rebuild)."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    memory_off(stack.orchestrator.handlers)
    return run_id, held


async def test_a_result_is_three_statements_and_no_transaction(stack: Stack) -> None:
    """The run read, the rows read with their recorded attempts, ONE guarded write (the
    attempt, `a`'s end, `b`'s dispatch, the run's version, the outbox)."""
    run_id, held = await dispatched_a(stack)
    version = await version_of(stack, run_id)
    with watched(stack) as (statements, begun):
        await stack.orchestrator.handlers.handle_batch([succeeded(held[0])])
    assert begun == []
    assert len(statements) == 3, statements
    assert statements[0].startswith("SELECT runs.")
    assert "FOR UPDATE" not in statements[0]
    assert statements[1].startswith("SELECT tasks.")
    assert "task_attempts" in statements[1]
    assert "INSERT INTO task_attempts" in statements[2]
    assert "cadenza_expect_rows" in statements[2]
    assert await version_of(stack, run_id) == version + 1
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["b"].status) == ("succeeded", "ready")
    assert [(a.task_id.rpartition(".")[2], a.attempt) for a in await stack.attempts(run_id)] == [
        ("a", 1)
    ]
    await assert_eventually(lambda: len(held) == 2)  # `b` published once


async def test_a_result_whose_run_was_written_meanwhile_is_applied_locked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer (the sweeper, a command) moves the run's version on between the read
    and the write: nothing of the batch is written, and the locked way applies the result
    once — one attempt recorded, `b` dispatched once."""
    run_id, held = await dispatched_a(stack)
    monkeypatch.setattr(
        store, "read_runs", changing_after_read(stack, lambda rid: bump(stack, rid))
    )
    before = locked_again("task.result")
    await stack.orchestrator.handlers.handle_batch([succeeded(held[0])])
    assert metrics.BATCHES_LOCKED_AGAIN.labels("task.result", "changed")._value.get() >= 1
    assert locked_again("task.result") == before + 1
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["b"].status, tasks["b"].attempt) == ("succeeded", "ready", 1)
    assert len(await stack.attempts(run_id)) == 1
    assert await ready_rows(stack, run_id) == 2  # a's and b's, each once


async def test_two_orchestrators_applying_one_result_apply_it_once(stack: Stack) -> None:
    """A rebalance hands the same result to two orchestrators, and both read before either
    writes: one statement wins, the other fails whole and, locked, finds the attempt
    recorded (a duplicate)."""
    run_id, held = await dispatched_a(stack)
    both_read = asyncio.Barrier(2)
    real = store.read_tasks_with_attempts

    calls = 0

    async def read_together(session: Any, task_ids: Any) -> Any:
        nonlocal calls
        read = await real(session, task_ids)
        calls += 1
        if calls <= 2:  # neither writes before both have read the attempt unrecorded
            await both_read.wait()
        return read

    second = memory_off(RunHandlers(stack.resources, stack.settings, GraphCache()))
    before = locked_again("task.result")
    duplicates = metrics.RESULTS_IGNORED.labels("duplicate")._value.get()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "read_tasks_with_attempts", read_together)
        await asyncio.gather(
            stack.orchestrator.handlers.handle_batch([succeeded(held[0])]),
            second.handle_batch([succeeded(held[0])]),
        )
    assert locked_again("task.result") == before + 1
    assert metrics.RESULTS_IGNORED.labels("duplicate")._value.get() == duplicates + 1
    assert len(await stack.attempts(run_id)) == 1
    assert await ready_rows(stack, run_id) == 2
    # Each sent `b`'s task.ready as its statement left (early dispatch): the same attempt,
    # which a worker's claim runs once (two copies in one fetch may come as one). The loser,
    # locked, dispatched nothing more.
    await assert_eventually(lambda: len(held) >= 2)
    assert held[0].node_id == "a"
    assert {(r.node_id, r.attempt) for r in held[1:]} == {("b", 1)}
    assert len(held) <= 3


def another_sweeper(stack: Stack) -> Sweeper:
    """The sweeper of another orchestrator (during a rebalance both may sweep a run): it
    takes no turns with this process's batches (``RunTurns``), and what it writes does not
    make this process's memory forget the run."""

    async def after_commit(effects: Effects) -> None:
        return None

    return Sweeper(stack.resources, stack.settings, GraphCache(), after_commit)


async def test_the_sweeper_redispatching_between_read_and_write_wins(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real second writer: another orchestrator's sweeper, under the run's lock,
    dispatches `a` again (its worker counted lost) after the result's batch read the rows
    and before it writes. Its write moved the version on, so the batch writes nothing;
    applied locked, the late result of attempt 1 finds that attempt recorded `lost` and is a
    duplicate. (This process's own sweeper waits for the batch: test_early_dispatch.py.)"""
    run_id, held = await dispatched_a(stack)
    real = store.read_tasks_with_attempts
    sweeps: list[int] = []
    sweeper = another_sweeper(stack)

    async def read_then_sweep(session: Any, task_ids: Any) -> Any:
        read = await real(session, task_ids)
        if not sweeps:  # once: the locked way's own read goes through
            sweeps.append(await sweeper._redispatch(run_id, {held[0].task_id: (1, "worker_lost")}))
        return read

    monkeypatch.setattr(store, "read_tasks_with_attempts", read_then_sweep)
    before = locked_again("task.result")
    await stack.orchestrator.handlers.handle_batch([succeeded(held[0])])
    assert sweeps == [1]
    assert locked_again("task.result") == before + 1
    a = (await stack.tasks(run_id))["a"]
    assert (a.status, a.attempt) == ("ready", 2)
    assert [(x.attempt, x.status) for x in await stack.attempts(run_id)] == [(1, "lost")]
    b = (await stack.tasks(run_id)).get("b")
    assert b is None or b.attempt == 0  # never dispatched in the database
    await assert_eventually(lambda: ("a", 2) in {(r.node_id, r.attempt) for r in held})
    # What the batch sent as its statement left (early dispatch) — `b`'s attempt 1, from
    # the late result — went out all the same: the race two orchestrators can still run
    # into (docs/orchestrator.md, Early dispatch).
    assert {(r.node_id, r.attempt) for r in held} <= {("a", 1), ("a", 2), ("b", 1)}
