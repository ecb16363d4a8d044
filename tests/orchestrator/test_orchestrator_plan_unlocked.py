"""Planning without a transaction (PostgreSQL): a batch of plan.requested reads its runs with
no lock and writes the plan as ONE statement that holds only while each run is still
``pending``. When a run changed between the read and the write — a command, or a second
orchestrator during a rebalance — nothing is written and the batch is planned the locked
way, which sees what happened: every run is planned once, and nothing is half-written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg.transaction
import pytest
from cadenza_events import Envelope, PlanRequested
from cadenza_orchestrator import GraphCache, metrics, store
from cadenza_orchestrator.handlers import RunHandlers
from cadenza_state import OutboxMessage, direct
from orchestrator_stack import INTEGRATION, Stack
from sqlalchemy import event, func, select

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


def plan_of(run_id: str, spec: dict[str, Any] = THREE) -> Envelope[PlanRequested]:
    plan = PlanRequested(run_id=run_id, workflow_name=spec["name"], spec=spec, inputs={})
    return Envelope(payload=plan, source="/test/gateway", tenant_id="acme", plan_id=run_id)


async def pending_run(stack: Stack, spec: dict[str, Any] = THREE) -> str:
    """A run the way the gateway inserts it, its plan.requested NOT published (the test
    hands it to the handler itself)."""
    return await stack.submit(spec, publish_times=0)


@contextmanager
def watched(stack: Stack) -> Iterator[tuple[list[str], list[str]]]:
    """The statements this task sends, and the transactions asyncpg begins for it."""
    statements: list[str] = []
    begun: list[str] = []
    me = asyncio.current_task()

    def observe(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if asyncio.current_task() is me:
            statements.append(statement)

    real_start = asyncpg.transaction.Transaction.start

    async def start(self: Any) -> None:
        if asyncio.current_task() is me:
            begun.append("BEGIN")
        await real_start(self)

    engine = stack.resources.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", observe)
    asyncpg.transaction.Transaction.start = start  # type: ignore[method-assign]
    try:
        yield statements, begun
    finally:
        asyncpg.transaction.Transaction.start = real_start  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", observe)


async def ready_rows(stack: Stack, run_id: str) -> int:
    """task.ready rows staged for this run's tasks (keyed by task id)."""
    async with stack.resources.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.key.like(f"{run_id}.%"))
        )
    return int(count or 0)


def locked_again() -> float:
    return sum(
        metrics.PLANS_LOCKED_AGAIN.labels(reason)._value.get() for reason in ("changed", "conflict")
    )


def silent_worker(stack: Stack) -> None:
    stack.worker.script = lambda ready, params: None  # tasks stay as the plan left them


async def test_a_plan_is_two_statements_and_no_transaction(stack: Stack) -> None:
    silent_worker(stack)
    run_id = await pending_run(stack)
    started = metrics.RUNS_STARTED._value.get()
    with watched(stack) as (statements, begun):
        await stack.orchestrator.handlers.handle_batch([plan_of(run_id)])
    assert begun == []  # no BEGIN, so no COMMIT either
    assert len(statements) == 2, statements
    assert statements[0].startswith("SELECT runs.")
    assert "FOR UPDATE" not in statements[0]
    assert statements[1].startswith("WITH w0 AS (INSERT INTO tasks")
    assert "cadenza_expect_rows" in statements[1]
    assert (await stack.run(run_id)).status == "running"
    assert {n: t.status for n, t in (await stack.tasks(run_id)).items()} == {
        "a": "ready",
        "b": "ready",
        "c": "ready",
    }
    assert await ready_rows(stack, run_id) == 3
    assert metrics.RUNS_STARTED._value.get() == started + 1


async def test_turned_off_a_plan_takes_the_runs_lock_in_a_transaction(stack: Stack) -> None:
    await stack.restart_orchestrator(plan_unlocked=False)
    silent_worker(stack)
    run_id = await pending_run(stack)
    with watched(stack) as (statements, begun):
        await stack.orchestrator.handlers.handle_batch([plan_of(run_id)])
    assert begun == ["BEGIN"]
    assert "FOR UPDATE" in statements[0]
    assert (await stack.run(run_id)).status == "running"


def changing_after_read(stack: Stack, change: Callable[[str], Any]) -> Any:
    """``store.read_runs`` that lets ``change`` act on each run right after reading it."""
    real = store.read_runs

    async def read_then_change(session: Any, run_ids: Any) -> Any:
        runs = await real(session, run_ids)
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
        async with stack.resources.sessions() as other, other.begin():
            await direct.execute(other, "UPDATE runs SET status = 'cancelled' WHERE id = $1", rid)

    monkeypatch.setattr(store, "read_runs", changing_after_read(stack, cancel))
    before, ignored = locked_again(), metrics.PLANS_IGNORED.labels("duplicate")._value.get()
    started = metrics.RUNS_STARTED._value.get()
    await stack.orchestrator.handlers.handle_batch([plan_of(run_id, SPECS[spec])])
    assert metrics.PLANS_LOCKED_AGAIN.labels("changed")._value.get() >= 1
    assert locked_again() == before + 1
    assert metrics.PLANS_IGNORED.labels("duplicate")._value.get() == ignored + 1
    assert metrics.RUNS_STARTED._value.get() == started  # undone: never counted
    assert (await stack.run(run_id)).status == "cancelled"
    assert await stack.tasks(run_id) == {}
    assert await ready_rows(stack, run_id) == 0


async def test_two_orchestrators_planning_one_run_plan_it_once(stack: Stack) -> None:
    """A rebalance hands the same plan.requested to two orchestrators, and both read the
    run while it is pending: one statement wins, the other fails whole and its
    orchestrator, locked, finds the run planned. One set of task rows, one dispatch each."""
    run_id = await pending_run(stack)
    both_read = asyncio.Barrier(2)
    real = store.read_runs

    async def read_together(session: Any, run_ids: Any) -> Any:
        runs = await real(session, run_ids)
        await both_read.wait()  # neither writes before both have read `pending`
        return runs

    first = stack.orchestrator.handlers
    second = RunHandlers(stack.resources, stack.settings, GraphCache())
    before = locked_again()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "read_runs", read_together)
        await asyncio.gather(
            first.handle_batch([plan_of(run_id)]), second.handle_batch([plan_of(run_id)])
        )
    assert locked_again() == before + 1
    assert sorted(await stack.tasks(run_id)) == ["a", "b", "c"]
    assert await ready_rows(stack, run_id) == 3
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded"
    assert sorted(a.attempt for a in await stack.attempts(run_id)) == [1, 1, 1]
