"""Runs held whole in memory by the orchestrator that planned them (``memory.RunMemory``):
their results batches read nothing — no run row, no task rows, no recorded attempts, no
"is any task open?" or final counts at the end — and write ONE statement, guarded on the
run's version. What memory holds is the database's state, row for row, after every
batch; and when anything else wrote the run since (a command, the sweeper, another
orchestrator), the guard fails, the batch is applied the locked way from the database,
and the run is forgotten."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cadenza_events import Envelope, TaskError, TaskReady, TaskResult, Topic
from cadenza_orchestrator import metrics, store
from cadenza_orchestrator.graph import GraphCache
from cadenza_orchestrator.handlers import RunHandlers
from cadenza_orchestrator.outcome import HELD, OPEN
from cadenza_orchestrator.rows import COLUMNS, TaskRow
from cadenza_orchestrator.writes import BatchWrites
from cadenza_state import TaskRecord
from orchestrator_specs import DIAMOND
from orchestrator_stack import INTEGRATION, Stack
from prometheus_client import REGISTRY
from sqlalchemy import select
from support import assert_eventually
from support.tracing import capture_spans
from test_orchestrator_unlocked import (
    THREE,
    TWO_STEPS,
    another_sweeper,
    bump,
    hold_by_hand,
    locked_again,
    ready_rows,
    succeeded,
    version_of,
    watched,
)

pytestmark = pytest.mark.parametrize(
    "stack", [pytest.param(INTEGRATION, marks=pytest.mark.integration)], indirect=True
)

FAN_OF_THREE = {
    "name": "fan-of-three",
    "tasks": [
        {"id": "each", "tool": "noop", "for_each": "list(range(3))"},
        {"id": "after", "tool": "noop", "needs": ["each"]},
    ],
}


def handlers(stack: Stack) -> RunHandlers:
    return stack.orchestrator.handlers


async def database_rows(stack: Stack, run_id: str) -> dict[str, dict[str, Any]]:
    table: Any = TaskRecord.__table__
    async with stack.resources.sessions() as session:
        result = await session.execute(
            select(*(table.c[name] for name in COLUMNS)).where(table.c.run_id == run_id)
        )
        return {row.id: row.values() for row in (TaskRow(*r) for r in result.all())}


async def database_attempts(stack: Stack, run_id: str) -> set[tuple[str, int]]:
    return {(a.task_id, a.attempt) for a in await stack.attempts(run_id)}


async def assert_memory_is_the_database(
    stack: Stack, run_id: str, of: RunHandlers | None = None
) -> None:
    state = (of or handlers(stack)).memory.get(run_id)
    assert state is not None, "the run is not held"
    assert {i: row.values() for i, row in state.rows.items()} == await database_rows(stack, run_id)
    assert state.attempts == await database_attempts(stack, run_id)
    assert state.run.version == await version_of(stack, run_id)
    assert state.run.status == (await stack.run(run_id)).status
    rows = await database_rows(stack, run_id)
    assert state.waiting == {i for i, r in rows.items() if r["status"] in OPEN | HELD}


def memory_hits(outcome: str = "hit") -> float:
    return (
        REGISTRY.get_sample_value("cadenza_orchestrator_run_memory_total", {"outcome": outcome})
        or 0.0
    )


async def test_a_result_of_a_run_in_memory_is_one_statement(stack: Stack) -> None:
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    await assert_memory_is_the_database(stack, run_id)
    version = await version_of(stack, run_id)
    hits = memory_hits()
    with watched(stack) as (statements, begun):
        await handlers(stack).handle_batch([succeeded(held[0])])
    assert begun == []
    assert len(statements) == 1, statements  # the guarded write: nothing read
    assert "INSERT INTO task_attempts" in statements[0]
    assert "cadenza_expect_rows" in statements[0]
    assert memory_hits() == hits + 1
    assert await version_of(stack, run_id) == version + 1
    await assert_memory_is_the_database(stack, run_id)
    await assert_eventually(lambda: len(held) == 2)
    # The run's last result: its end and its final counts judged from memory, one statement.
    with watched(stack) as (statements, begun):
        await handlers(stack).handle_batch([succeeded(held[1])])
    assert (begun, len(statements)) == ([], 1), statements
    run = await stack.run(run_id)
    assert run.status == "succeeded", run.error
    assert handlers(stack).memory.get(run_id) is None  # a finished run is forgotten
    status = await stack.resources.hot.get_run_status(run_id)
    assert status is not None
    assert (status["status"], status["tasks_total"], status["tasks_done"]) == (
        "succeeded",
        "2",
        "2",
    )


@pytest.mark.parametrize(
    "spec", [DIAMOND, FAN_OF_THREE, THREE], ids=["diamond", "fan-out", "independent"]
)
async def test_memory_is_the_database_after_every_batch(stack: Stack, spec: dict[str, Any]) -> None:
    """Every task answered in a batch of its own: after each, memory holds exactly the
    rows, attempts, version and status the database has; the run ends as from the
    database (the fan-out's end waits for its third instance, then `after`; three
    independent tasks' for the third: "is any task open?" answered from memory)."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(spec)
    await assert_eventually(lambda: len(held) >= 1)
    await assert_memory_is_the_database(stack, run_id)
    answered = 0
    planned = len(await database_rows(stack, run_id))
    while (await stack.run(run_id)).status == "running":
        await assert_eventually(lambda n=answered: len(held) > n, timeout=10)
        for ready in held[answered:]:
            await handlers(stack).handle_batch([succeeded(ready, output={"v": 1, "sum": 2})])
            answered += 1
            if (await stack.run(run_id)).status == "running":
                await assert_memory_is_the_database(stack, run_id)
    run = await stack.run(run_id)
    assert run.status == "succeeded", run.error
    rows = await database_rows(stack, run_id)
    assert len(rows) == planned  # the plan made every row (memory starts complete)
    assert {r["status"] for r in rows.values()} == {"succeeded"}
    assert await database_attempts(stack, run_id) == {(i, 1) for i in rows}  # each once


async def test_a_run_written_since_memory_is_applied_locked_and_forgotten(stack: Stack) -> None:
    """Another writer moved the run's version on after this process last wrote it: the
    batch's guarded write fails whole, the locked way applies the result once, and the run
    is no longer held (its next batch reads it)."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    await bump(stack, run_id)
    before = locked_again("task.result")
    await handlers(stack).handle_batch([succeeded(held[0])])
    assert locked_again("task.result") == before + 1
    assert handlers(stack).memory.get(run_id) is None
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["b"].status, tasks["b"].attempt) == ("succeeded", "ready", 1)
    assert len(await stack.attempts(run_id)) == 1
    assert await ready_rows(stack, run_id) == 2
    # `b` went out as the guarded statement left (early dispatch) and again after the
    # locked way's commit: the same attempt, which a worker's claim runs once.
    await assert_eventually(lambda: len(held) == 3)
    assert [(r.node_id, r.attempt) for r in held] == [("a", 1), ("b", 1), ("b", 1)]
    hits = memory_hits()
    await handlers(stack).handle_batch([succeeded(held[1])])
    assert memory_hits() == hits  # read from the database
    assert (await stack.run(run_id)).status == "succeeded"


async def test_the_sweeper_of_this_process_makes_memory_forget_the_run(stack: Stack) -> None:
    """This process's sweeper dispatches `a` again after the plan: memory said attempt 1 was
    current, and is forgotten. The late result of attempt 1 is then judged on the database,
    where it is a duplicate of the attempt recorded `lost`: no guard fails, and nothing is
    dispatched on it (an early dispatch of `b` would have run `b` for a result that never
    counted). The result of attempt 2 then applies."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    assert handlers(stack).memory.get(run_id) is not None
    sweeper = stack.orchestrator.sweeper
    assert await sweeper._redispatch(run_id, {held[0].task_id: (1, "worker_lost")}) == 1
    assert handlers(stack).memory.get(run_id) is None
    await assert_eventually(lambda: len(held) == 2)
    before = locked_again("task.result")
    duplicates = metrics.RESULTS_IGNORED.labels("duplicate")._value.get()
    await handlers(stack).handle_batch([succeeded(held[0])])
    assert locked_again("task.result") == before
    assert metrics.RESULTS_IGNORED.labels("duplicate")._value.get() == duplicates + 1
    a = (await stack.tasks(run_id))["a"]
    assert (a.status, a.attempt) == ("ready", 2)
    assert [(x.attempt, x.status) for x in await stack.attempts(run_id)] == [(1, "lost")]

    assert held[1].attempt == 2
    await handlers(stack).handle_batch([succeeded(held[1])])
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["a"].attempt, tasks["b"].status) == ("succeeded", 2, "ready")
    await assert_memory_is_the_database(stack, run_id)
    # The run's few task.ready share its partition, in order: once `b`'s dispatch is in,
    # any earlier one would be too.
    await assert_eventually(lambda: any(r.node_id == "b" for r in held))
    assert [(r.node_id, r.attempt) for r in held] == [("a", 1), ("a", 2), ("b", 1)]


async def test_another_sweeper_dispatching_again_since_memory(stack: Stack) -> None:
    """Another orchestrator's sweeper (a rebalance) dispatches `a` again after the plan:
    memory still says attempt 1 is current. The late result of attempt 1 is judged on that,
    but the guard fails; locked, it is a duplicate of the attempt recorded `lost`. The
    result of attempt 2 then applies — though memory, had it been trusted, called it
    unknown."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    sweeper = another_sweeper(stack)
    assert await sweeper._redispatch(run_id, {held[0].task_id: (1, "worker_lost")}) == 1
    await assert_eventually(lambda: len(held) == 2)
    before = locked_again("task.result")
    await handlers(stack).handle_batch([succeeded(held[0])])
    assert locked_again("task.result") == before + 1
    a = (await stack.tasks(run_id))["a"]
    assert (a.status, a.attempt) == ("ready", 2)
    assert [(x.attempt, x.status) for x in await stack.attempts(run_id)] == [(1, "lost")]

    # Forgotten; its next batch reads it whole again, and holds it as the database has it.
    assert handlers(stack).memory.get(run_id) is None
    assert held[1].attempt == 2
    await handlers(stack).handle_batch([succeeded(held[1])])
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["a"].attempt, tasks["b"].status) == ("succeeded", 2, "ready")
    await assert_memory_is_the_database(stack, run_id)


async def test_an_ignored_result_still_proves_memory_right(stack: Stack) -> None:
    """Memory says attempt 2 was never dispatched (another orchestrator's sweeper did it
    since): judged on memory, its result would be dropped as unknown. The run is written
    guarded all the same, the guard fails, and the locked way applies it."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    sweeper = another_sweeper(stack)
    assert await sweeper._redispatch(run_id, {held[0].task_id: (1, "worker_lost")}) == 1
    await assert_eventually(lambda: len(held) == 2)
    assert held[1].attempt == 2
    before = locked_again("task.result")
    await handlers(stack).handle_batch([succeeded(held[1])])
    assert locked_again("task.result") == before + 1
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["a"].attempt, tasks["b"].status) == ("succeeded", 2, "ready")


async def test_a_duplicate_result_from_memory_is_ignored_without_a_conflict(stack: Stack) -> None:
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    await handlers(stack).handle_batch([succeeded(held[0])])
    duplicates = metrics.RESULTS_IGNORED.labels("duplicate")._value.get()
    before = locked_again("task.result")
    await handlers(stack).handle_batch([succeeded(held[0])])  # a redelivery
    assert metrics.RESULTS_IGNORED.labels("duplicate")._value.get() == duplicates + 1
    assert locked_again("task.result") == before
    assert len(await stack.attempts(run_id)) == 1
    await assert_memory_is_the_database(stack, run_id)


async def test_a_failed_batch_forgets_its_runs(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write fails (the database went away): the rows the batch changed in memory are
    not the database's, so the run is forgotten, and the batch retried applies from the
    database once."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    real = BatchWrites.flush

    async def failing(self: BatchWrites, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(BatchWrites, "flush", failing)
    with pytest.raises(ConnectionError):
        await handlers(stack).handle_batch([succeeded(held[0])])
    assert handlers(stack).memory.get(run_id) is None
    monkeypatch.setattr(BatchWrites, "flush", real)
    await handlers(stack).handle_batch([succeeded(held[0])])
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["b"].status) == ("succeeded", "ready")
    assert len(await stack.attempts(run_id)) == 1
    assert await ready_rows(stack, run_id) == 2


async def test_a_command_forgets_the_run(stack: Stack) -> None:
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    await stack.cancel(run_id)
    await stack.wait_run(run_id, "cancelled")
    assert handlers(stack).memory.get(run_id) is None
    await handlers(stack).handle_batch([succeeded(held[0])])  # late: the run is cancelled
    assert (await stack.run(run_id)).status == "cancelled"


async def test_memory_holds_at_most_its_rows(stack: Stack) -> None:
    """Bounded by task rows, least recently used out: the runs it let go of go on from the
    database and finish the same."""
    memory = handlers(stack).memory
    memory.max_rows = 5  # one two-step run and a half
    held = hold_by_hand(stack)
    runs = [await stack.submit(TWO_STEPS) for _ in range(3)]
    await assert_eventually(lambda: len(held) == 3)
    assert memory.rows == 4  # one run went out (which: the order plans were applied in)
    assert len([r for r in runs if memory.get(r) is not None]) == 2
    for ready in list(held):
        await handlers(stack).handle_batch([succeeded(ready)])
    await assert_eventually(lambda: len(held) == 6)
    for ready in held[3:]:
        await handlers(stack).handle_batch([succeeded(ready)])
    for run_id in runs:
        assert (await stack.run(run_id)).status == "succeeded"
    assert memory.rows == 0
    assert len(memory) == 0


FAN_FAILS = {
    "name": "fan-fails",
    "tasks": [
        {"id": "each", "tool": "noop", "for_each": [0, 1, 2], "on_failure": "rescue"},
        {"id": "rescue", "tool": "noop", "fallback": True},
    ],
}


async def test_a_bulk_cancel_forgets_the_run(stack: Stack) -> None:
    """An instance fails: its siblings are cancelled by ONE update in the database, rows
    memory holds but the transition did not. The run is forgotten (its next batch reads
    it), goes on with its fallback, and a sibling's late result changes nothing."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(FAN_FAILS)
    await assert_eventually(lambda: len(held) == 3)
    one = next(r for r in held if r.task_id.endswith(".1"))
    error = TaskError(code="bad_item", message="no", retryable=False)
    failed = TaskResult(run_id=run_id, task_id=one.task_id, attempt=1, status="failed", error=error)
    await handlers(stack).handle_batch(
        [Envelope(payload=failed, source="/tests", plan_id=run_id, tenant_id="acme")]
    )
    assert handlers(stack).memory.get(run_id) is None
    rows = await database_rows(stack, run_id)
    assert sorted(r["status"] for i, r in rows.items() if r["item_index"] is not None) == [
        "cancelled",
        "cancelled",
        "failed",
    ]
    await assert_eventually(lambda: len(held) == 4)  # the fallback
    late = next(r for r in held if r.task_id.endswith(".0"))
    await handlers(stack).handle_batch([succeeded(late)])
    assert (await database_rows(stack, run_id))[late.task_id]["status"] == "cancelled"
    await handlers(stack).handle_batch([succeeded(held[3])])
    assert (await stack.run(run_id)).status == "succeeded"


def elsewhere(stack: Stack) -> RunHandlers:
    """A second orchestrator process: no run held, no graph cached (a restart, or the new
    owner of a partition after a rebalance)."""
    return RunHandlers(stack.resources, stack.settings, GraphCache())


@pytest.mark.parametrize("spec", [DIAMOND, FAN_OF_THREE], ids=["diamond", "fan-out"])
async def test_a_run_planned_elsewhere_is_read_whole_once_then_nothing(
    stack: Stack, spec: dict[str, Any]
) -> None:
    """The new owner's first batch of a running run (one result in already, applied by the
    orchestrator that planned it) reads its row (with the spec: no graph cached) and ALL
    its rows and attempts in one statement, writes guarded, and holds the run as the
    database has it; every later batch reads nothing."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(spec)
    await assert_eventually(lambda: len(held) >= 1)
    await handlers(stack).handle_batch([succeeded(held[0], output={"v": 1, "sum": 2})])
    await assert_eventually(lambda: len(held) >= 2)
    owner = elsewhere(stack)
    rebuilt = memory_hits("rebuilt")
    with watched(stack) as (statements, begun):
        await owner.handle_batch([succeeded(held[1], output={"v": 1, "sum": 2})])
    assert begun == []
    assert len(statements) == 3, statements
    assert statements[0].startswith("SELECT runs.")
    assert "tasks.run_id = ANY" in statements[1]
    assert "task_attempts" in statements[1]
    assert "cadenza_expect_rows" in statements[2]
    assert memory_hits("rebuilt") == rebuilt + 1
    await assert_memory_is_the_database(stack, run_id, of=owner)
    answered = 2
    while (await stack.run(run_id)).status == "running":
        await assert_eventually(lambda n=answered: len(held) > n, timeout=10)
        for ready in held[answered:]:
            hits = memory_hits()
            with watched(stack) as (statements, begun):
                await owner.handle_batch([succeeded(ready, output={"v": 1, "sum": 2})])
            assert (begun, len(statements)) == ([], 1), statements
            assert memory_hits() == hits + 1
            answered += 1
            if (await stack.run(run_id)).status == "running":
                await assert_memory_is_the_database(stack, run_id, of=owner)
    run = await stack.run(run_id)
    assert run.status == "succeeded", run.error
    rows = await database_rows(stack, run_id)
    assert await database_attempts(stack, run_id) == {(i, 1) for i in rows}


async def test_a_rebuilt_run_that_was_written_meanwhile_is_applied_locked(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer moves the run on between the new owner's two reads (its row, then its
    rows): the guard fails, the batch applies locked once, and nothing is held."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    real = store.read_whole_runs

    async def written_meanwhile(session: Any, run_ids: Any) -> Any:
        await bump(stack, run_id)
        return await real(session, run_ids)

    monkeypatch.setattr(store, "read_whole_runs", written_meanwhile)
    owner = elsewhere(stack)
    before = locked_again("task.result")
    await owner.handle_batch([succeeded(held[0])])
    assert locked_again("task.result") == before + 1
    assert owner.memory.get(run_id) is None
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["b"].status) == ("succeeded", "ready")
    assert len(await stack.attempts(run_id)) == 1
    assert await ready_rows(stack, run_id) == 2


def rebalanced(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "cadenza_orchestrator_run_memory_rebalanced_total", {"outcome": outcome}
        )
        or 0.0
    )


async def planned_and_held(
    stack: Stack,
) -> tuple[str, list[TaskReady], set[tuple[str, int]]]:
    """A two-step run planned through the consumer, its `a` held by hand: (the run, what
    was dispatched, every partition of the orchestrator's two topics)."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    assert handlers(stack).memory.get(run_id) is not None
    names = [stack.resources.registry.name(t) for t in (Topic.PLAN_REQUESTED, Topic.TASK_RESULT)]
    return run_id, held, {(name, p) for name in names for p in range(3)}


async def test_a_rebalance_keeps_the_runs_of_partitions_assigned_straight_back(
    stack: Stack,
) -> None:
    """Kafka's assignors revoke every partition, then assign them again: a run whose
    partition came straight back is still this process's, held as it was, and its next
    batch reads nothing — whether every partition came back, or only some (the consumer
    still holds the run's)."""
    run_id, held, every = await planned_and_held(stack)
    state = handlers(stack).memory.get(run_id)
    kept, hits, rebuilt = rebalanced("kept"), memory_hits("hit"), memory_hits("rebuilt")
    handlers(stack).revoked(every)
    handlers(stack).assigned(every)
    assert handlers(stack).memory.get(run_id) is state
    assert stack.orchestrator.holds(run_id) is True
    handlers(stack).revoked(every)
    handlers(stack).assigned(every - {min(every)})  # some went elsewhere: asks the consumer
    assert handlers(stack).memory.get(run_id) is state
    assert rebalanced("kept") >= kept + 2
    await handlers(stack).handle_batch([succeeded(held[0])])
    assert (memory_hits("hit"), memory_hits("rebuilt")) == (hits + 1, rebuilt)
    await assert_memory_is_the_database(stack, run_id)


async def test_a_rebalance_forgets_the_runs_of_partitions_that_went(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose partition went to another process may now be that one's to write: it
    is forgotten at the assignment, and its next batch here (the partition back again)
    reads it whole, and its span says so."""
    run_id, held, every = await planned_and_held(stack)
    forgotten = rebalanced("forgotten")
    handlers(stack).revoked(every)
    # The consumer after the rebalance: the run's partition is another member's now.
    monkeypatch.setattr(handlers(stack), "holds", lambda r: r != run_id)
    handlers(stack).assigned(every - {min(every)})
    assert handlers(stack).memory.get(run_id) is None
    assert rebalanced("forgotten") >= forgotten + 1
    monkeypatch.undo()
    exporter = capture_spans(monkeypatch, "cadenza_orchestrator.handlers.tracer")
    rebuilt = memory_hits("rebuilt")
    await handlers(stack).handle_batch([succeeded(held[0])])
    assert memory_hits("rebuilt") == rebuilt + 1
    await assert_memory_is_the_database(stack, run_id)
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "orchestrator.batch"]
    attributes = dict(span.attributes or {})
    assert attributes["cadenza.batch.runs_rebuilt"] == 1
    assert attributes["cadenza.batch.runs_in_memory"] == 1


async def test_a_run_kept_across_a_rebalance_but_written_meanwhile_is_caught_by_the_guard(
    stack: Stack,
) -> None:
    """The partition came "straight back", but another orchestrator wrote the run in
    between (this process was dropped from the group for a generation): the run kept is
    stale. Its next batch here fails the guard, is applied the locked way from the
    database, and the run ends as if nothing had been kept."""
    run_id, held, every = await planned_and_held(stack)
    handlers(stack).revoked(every)
    await elsewhere(stack).handle_batch([succeeded(held[0])])  # a done, b dispatched there
    await assert_eventually(lambda: len(held) == 2)
    handlers(stack).assigned(every)
    assert handlers(stack).memory.get(run_id) is not None  # kept, and behind the database
    before = locked_again("task.result")
    await handlers(stack).handle_batch([succeeded(held[1])])
    assert locked_again("task.result") == before + 1
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded"
    assert sorted((a.task_id, a.attempt) for a in await stack.attempts(run_id)) == sorted(
        (r.task_id, r.attempt) for r in held
    )


async def test_a_results_batch_waits_while_a_command_of_its_run_applies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command (on plan.requested) and a results batch (on task.result) of one run are
    batches of two partitions, which this process applies side by side: they take turns
    (``RunTurns``). The results batch waits while the cancel's batch holds the run, then
    finds it cancelled: its result changes nothing, `b` is never sent (not even early), and
    memory does not hold the run."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 1)
    real = store.lock_runs
    results: list[asyncio.Task[None]] = []
    waits = metrics.RUN_TURN_WAITS.labels("batch")._value.get()

    async def results_meanwhile(session: Any, run_ids: Any, **kwargs: Any) -> Any:
        if not results:
            results.append(asyncio.create_task(handlers(stack).handle_batch([succeeded(held[0])])))
            await assert_eventually(
                lambda: metrics.RUN_TURN_WAITS.labels("batch")._value.get() == waits + 1
            )
            assert not results[0].done()
        return await real(session, run_ids, **kwargs)

    monkeypatch.setattr(store, "lock_runs", results_meanwhile)
    await stack.cancel(run_id)
    await stack.wait_run(run_id, "cancelled")
    assert len(results) == 1
    await asyncio.wait_for(results[0], 10)
    assert (await stack.run(run_id)).status == "cancelled"
    assert handlers(stack).memory.get(run_id) is None
    assert [r.node_id for r in held] == ["a"]
