"""Early dispatch: a task.result or plan.requested batch applied without a lock hands its
task.ready records to Kafka as its guarded statement goes to PostgreSQL, before the commit
(``OrchestratorSettings.early_dispatch``, docs/orchestrator.md "Early dispatch").

What makes it safe, each proved here:
- a worker runs an attempt once (its claim), so a task.ready sent again is harmless;
- a batch whose statement did not hold (a run moved meanwhile) is applied again the locked
  way and dispatches the same attempt, whose result applies once;
- the dispatched task's result lands on its run's task.result partition after its cause.
  After a crash (or a rebalance) the batch is applied again and that result may come in
  the same fetch as its cause: it is applied there, behind the result that dispatched its
  attempt (``RecordedResults.later``), never dropped as "unknown attempt" (the sweeper would
  have run the task a second time);
- a plan's first task may have run when its orchestrator died before the commit: its result
  may reach the next owner before the redelivered plan; it waits for the plan
  (``plan_waits``), never dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cadenza_events import Envelope, TaskResult
from cadenza_orchestrator import metrics
from cadenza_orchestrator.graph import task_id_for
from cadenza_state import direct
from orchestrator_stack import INTEGRATION, STACKS, Stack
from sqlalchemy import text
from support import assert_eventually
from test_orchestrator_unlocked import hold_by_hand

TWO_STEPS = {
    "name": "two-steps",
    "tasks": [{"id": "a", "tool": "noop"}, {"id": "b", "tool": "noop", "needs": ["a"]}],
}
FAN_AFTER = {
    "name": "fan-after",
    "tasks": [
        {"id": "a", "tool": "noop"},
        {"id": "each", "tool": "noop", "needs": ["a"], "for_each": "tasks.a.output.items"},
    ],
}

integration_only = pytest.mark.parametrize(
    "stack", [pytest.param(INTEGRATION, marks=pytest.mark.integration)], indirect=True
)
both_stacks = pytest.mark.parametrize("stack", STACKS, indirect=True)


def result(run_id: str, task_id: str, attempt: int = 1, output: Any = 1) -> Envelope[TaskResult]:
    payload = TaskResult(
        run_id=run_id, task_id=task_id, attempt=attempt, status="succeeded", output=output
    )
    return Envelope(payload=payload, source="/tests", plan_id=run_id, tenant_id="acme")


def counted(counter: Any, *labels: str) -> float:
    return float((counter.labels(*labels) if labels else counter)._value.get())


def attempts_of(rows: list[Any]) -> list[tuple[str, int, str]]:
    return sorted((a.task_id.rpartition(".")[2], a.attempt, a.status) for a in rows)


@both_stacks
@pytest.mark.parametrize("in_memory", [True, False], ids=["held", "read"])
async def test_a_result_fetched_with_the_result_that_dispatched_it_is_applied(
    stack: Stack, in_memory: bool
) -> None:
    """`b`'s result comes in the same batch as `a`'s, whose transition dispatches `b`'s
    attempt: both apply, each attempt recorded once (a second delivery of `b`'s result in
    the batch is a duplicate), and the run finishes."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: held)
    if not in_memory:  # as an orchestrator that took the partition over reads it
        stack.orchestrator.handlers.memory.forget([run_id])
    b = result(run_id, task_id_for(run_id, "b"), output=2)
    before = counted(metrics.RESULTS_BEHIND_DISPATCH)
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id), b, b])
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert attempts_of(await stack.attempts(run_id)) == [
        ("a", 1, "succeeded"),
        ("b", 1, "succeeded"),
    ]
    assert counted(metrics.RESULTS_BEHIND_DISPATCH) == before + 1


@both_stacks
async def test_fan_out_results_fetched_with_their_cause_are_applied(stack: Stack) -> None:
    """The same for the instances of a fan-out the earlier result expands: their rows did
    not exist before the batch."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(FAN_AFTER)
    await assert_eventually(lambda: held)
    items = [result(run_id, task_id_for(run_id, "each", i), output=i) for i in range(3)]
    cause = result(run_id, held[0].task_id, output={"items": [10, 20, 30]})
    await stack.orchestrator.handlers.handle_batch([cause, *items])
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    instances = [a for a in attempts_of(await stack.attempts(run_id)) if a[0].isdigit()]
    assert instances == [("0", 1, "succeeded"), ("1", 1, "succeeded"), ("2", 1, "succeeded")]


@both_stacks
async def test_a_result_of_an_attempt_the_batch_did_not_dispatch_is_ignored(
    stack: Stack,
) -> None:
    """Behind its run's first result, a result whose attempt that result did not dispatch
    (attempt 2 of `b`, dispatched as attempt 1) is ignored as before, and `b` waits for its
    own."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: held)
    ignored = counted(metrics.RESULTS_IGNORED, "unknown_attempt")
    stray = result(run_id, task_id_for(run_id, "b"), attempt=2)
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id), stray])
    assert counted(metrics.RESULTS_IGNORED, "unknown_attempt") == ignored + 1
    await assert_eventually(lambda: len(held) == 2)  # b dispatched, as attempt 1
    assert held[1].attempt == 1
    tasks = await stack.tasks(run_id)
    assert tasks["b"].status == "ready"
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[1].task_id)])
    assert (await stack.wait_run(run_id)).status == "succeeded"


@integration_only
async def test_task_ready_leaves_before_the_statement_returns(stack: Stack) -> None:
    """With the batch's one statement held up in PostgreSQL (a lock on the table its
    attempts go to), `b`'s task.ready already reaches the worker; once the lock goes, the
    statement commits and the run finishes, `b` dispatched once."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: held)
    committed = counted(metrics.EARLY_DISPATCH, "committed")
    async with stack.resources.sessions() as locker, locker.begin():
        await locker.execute(text("LOCK TABLE task_attempts IN EXCLUSIVE MODE"))
        batch = asyncio.create_task(
            stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id)])
        )
        # Received, not answered yet: the fake worker, as a real one, waits for the commit.
        received = stack.worker.received
        await assert_eventually(lambda: len(received) == 2, timeout=10)
        assert not batch.done()  # the statement is still waiting for the lock
        assert received[1].node_id == "b"
        tasks = await stack.tasks(run_id)
        assert tasks["b"].status == "pending"  # not committed yet
    await asyncio.wait_for(batch, 10)
    assert counted(metrics.EARLY_DISPATCH, "committed") == committed + 1
    # The fake worker hands `b` to the script once it sees the batch's turn over.
    await assert_eventually(lambda: len(held) == 2)
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[1].task_id)])
    assert (await stack.wait_run(run_id)).status == "succeeded"
    assert [r.node_id for r in held] == ["a", "b"]  # its outbox row was not sent again
    # `a` left before the plan's commit, `b` before its batch's, both marked so (no effect
    # before a worker sees that commit: tests/worker/test_dispatch_check.py).
    assert stack.worker.sent_before_commit == [True, True]
    await assert_eventually(lambda: outbox_empty(stack, run_id))


@integration_only
async def test_a_plan_sends_its_first_task_ready_before_its_statement_returns(
    stack: Stack,
) -> None:
    """With the plan's one statement held up in PostgreSQL (a lock on the table its task rows
    go to), `a`'s task.ready already reaches the worker, marked as sent before the commit,
    while the run is still pending with no task row; once the lock goes the plan commits,
    its outbox row is not sent again, and the run finishes."""
    held = hold_by_hand(stack)
    committed = counted(metrics.EARLY_DISPATCH, "committed")
    async with stack.resources.sessions() as locker, locker.begin():
        await locker.execute(text("LOCK TABLE tasks IN EXCLUSIVE MODE"))
        run_id = await stack.submit(TWO_STEPS)
        received = stack.worker.received  # not answered before the commit (as a worker)
        await assert_eventually(lambda: received, timeout=10)
        assert received[0].node_id == "a"
        assert stack.worker.sent_before_commit == [True]
        assert not held
        async with stack.resources.sessions() as reader:
            status = await reader.scalar(
                text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}
            )
        assert status == "pending"  # the plan is not committed yet
    await stack.wait_run(run_id, "running")
    assert counted(metrics.EARLY_DISPATCH, "committed") == committed + 1
    await assert_eventually(lambda: held)
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id)])
    await assert_eventually(lambda: len(held) == 2)
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[1].task_id)])
    assert (await stack.wait_run(run_id)).status == "succeeded"
    assert [(r.node_id, r.attempt) for r in held] == [("a", 1), ("b", 1)]
    await assert_eventually(lambda: outbox_empty(stack, run_id))


WIDE = {"name": "wide", "tasks": [{"id": "each", "tool": "noop", "for_each": "list(range(300))"}]}


@integration_only
async def test_a_wide_plan_sends_its_task_ready_before_its_task_rows_are_copied(
    stack: Stack,
) -> None:
    """A plan of 300 instances: its task rows go by a COPY of their own, before its
    statement. With that COPY held up by a lock, task.ready records already reach the
    worker (as many as its consumer takes in at once: each waits for the commit there), all
    marked: the first tasks do not wait for the plan's biggest write."""
    held = hold_by_hand(stack)
    async with stack.resources.sessions() as locker, locker.begin():
        await locker.execute(text("LOCK TABLE tasks IN EXCLUSIVE MODE"))
        run_id = await stack.submit(WIDE)
        received = stack.worker.received
        await assert_eventually(lambda: received, timeout=10)
        assert all(stack.worker.sent_before_commit)
        assert not held
    await assert_eventually(lambda: len(held) == 300)
    await stack.orchestrator.handlers.handle_batch([result(run_id, r.task_id) for r in held])
    assert (await stack.wait_run(run_id)).status == "succeeded"


@both_stacks
async def test_a_result_before_its_plan_waits_for_the_plan(stack: Stack) -> None:
    """An orchestrator sent a plan's task.ready and died before the commit; `a` ran. Its
    result reaches the next owner before the redelivered plan: the results batch waits (it
    is not dropped as an unknown task), the plan is applied, and the result then applies to
    the attempt the plan dispatched again — `a` recorded once, `b` dispatched, the run
    finishes without waiting for the sweeper."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS, publish_times=0)  # the plan: not applied yet
    waited = counted(metrics.RESULTS_BEFORE_PLAN, "waited")
    ignored = counted(metrics.RESULTS_IGNORED, "unknown_task")
    handlers = stack.orchestrator.handlers
    early = asyncio.create_task(handlers.handle_batch([result(run_id, task_id_for(run_id, "a"))]))
    await assert_eventually(lambda: counted(metrics.RESULTS_BEFORE_PLAN, "waited") > waited)
    assert not early.done()
    await handlers.handle_batch([stack.plan_of(run_id, TWO_STEPS)])
    await asyncio.wait_for(early, 10)
    await assert_eventually(lambda: [r.node_id for r in held] == ["a", "b"])
    await handlers.handle_batch([result(run_id, held[1].task_id)])
    assert (await stack.wait_run(run_id)).status == "succeeded"
    assert attempts_of(await stack.attempts(run_id)) == [
        ("a", 1, "succeeded"),
        ("b", 1, "succeeded"),
    ]
    assert counted(metrics.RESULTS_IGNORED, "unknown_task") == ignored


@both_stacks
async def test_a_result_whose_plan_never_comes_is_given_up(stack: Stack) -> None:
    """A pending run whose plan does not come within ``result_plan_wait_s`` (dead-lettered,
    or applied by another process): its result is ignored as an unknown task, and a later
    result of that run is ignored at once, not waited for again."""
    await stack.restart_orchestrator(result_plan_wait_s=0.3)
    run_id = await stack.submit(TWO_STEPS, publish_times=0)
    given_up = counted(metrics.RESULTS_BEFORE_PLAN, "given_up")
    ignored = counted(metrics.RESULTS_IGNORED, "unknown_task")
    handlers = stack.orchestrator.handlers
    await asyncio.wait_for(handlers.handle_batch([result(run_id, task_id_for(run_id, "a"))]), 10)
    assert counted(metrics.RESULTS_BEFORE_PLAN, "given_up") == given_up + 1
    assert counted(metrics.RESULTS_IGNORED, "unknown_task") == ignored + 1
    waited = counted(metrics.RESULTS_BEFORE_PLAN, "waited")
    await handlers.handle_batch([result(run_id, task_id_for(run_id, "b"))])
    assert counted(metrics.RESULTS_BEFORE_PLAN, "waited") == waited
    assert counted(metrics.RESULTS_IGNORED, "unknown_task") == ignored + 2
    assert (await stack.run(run_id)).status == "pending"


async def outbox_empty(stack: Stack, run_id: str) -> bool:
    async with stack.resources.sessions() as session:
        left = await session.scalar(
            text("SELECT count(*) FROM outbox WHERE key LIKE :run"), {"run": f"{run_id}%"}
        )
    return int(left or 0) == 0


@integration_only
async def test_a_statement_that_did_not_hold_dispatches_the_same_attempt_again(
    stack: Stack,
) -> None:
    """The run moved between the batch's read and its statement (its version bumped, as
    the sweeper or a command does): the early task.ready was sent, nothing was written, and
    the batch applied the locked way sends `b`'s same attempt again. The worker's claim runs
    it once; its result is applied once."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: held)
    again = counted(metrics.EARLY_DISPATCH, "applied_again")
    async with stack.resources.sessions() as other, other.begin():
        await direct.execute(other, "UPDATE runs SET version = version + 1 WHERE id = $1", run_id)
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id)])
    assert counted(metrics.EARLY_DISPATCH, "applied_again") == again + 1
    await assert_eventually(lambda: len(held) == 3)
    assert [(r.node_id, r.attempt) for r in held[1:]] == [("b", 1), ("b", 1)]
    b = result(run_id, held[1].task_id)
    await stack.orchestrator.handlers.handle_batch([b])
    await stack.orchestrator.handlers.handle_batch([b])  # the second dispatch's answer
    assert (await stack.wait_run(run_id)).status == "succeeded"
    assert attempts_of(await stack.attempts(run_id)) == [
        ("a", 1, "succeeded"),
        ("b", 1, "succeeded"),
    ]


@integration_only
async def test_off_the_task_ready_waits_for_the_commit(stack: Stack) -> None:
    """``early_dispatch`` false: the batch sends its task.ready after the commit, as the
    locked way does; nothing is counted as sent early."""
    await stack.restart_orchestrator(early_dispatch=False)
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: held)
    outcomes = ("committed", "applied_again", "failed")
    before = [counted(metrics.EARLY_DISPATCH, o) for o in outcomes]
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id)])
    await assert_eventually(lambda: len(held) == 2)
    assert [counted(metrics.EARLY_DISPATCH, o) for o in outcomes] == before
    assert stack.worker.sent_before_commit == [False, False]
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[1].task_id)])
    assert (await stack.wait_run(run_id)).status == "succeeded"


@integration_only
async def test_this_process_sweeper_waits_for_a_batch_in_flight(stack: Stack) -> None:
    """The sweeper of this process takes turns with its batches (``RunTurns``): while a
    results batch that already sent `b` early waits on its statement, a sweep of the run
    (its worker counted lost) waits too. The batch's statement holds (it is not applied
    again, which could have dispatched differently), and the sweep, under the run's lock,
    finds `a` finished and dispatches nothing."""
    held = hold_by_hand(stack)
    run_id = await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: held)
    committed = counted(metrics.EARLY_DISPATCH, "committed")
    waits = counted(metrics.RUN_TURN_WAITS, "sweep")
    sweeper = stack.orchestrator.sweeper
    async with stack.resources.sessions() as locker, locker.begin():
        await locker.execute(text("LOCK TABLE task_attempts IN EXCLUSIVE MODE"))
        batch = asyncio.create_task(
            stack.orchestrator.handlers.handle_batch([result(run_id, held[0].task_id)])
        )
        received = stack.worker.received
        await assert_eventually(lambda: len(received) == 2, timeout=10)  # `b`, sent early
        sweep = asyncio.create_task(
            sweeper._redispatch(run_id, {held[0].task_id: (1, "worker_lost")})
        )
        await assert_eventually(lambda: counted(metrics.RUN_TURN_WAITS, "sweep") == waits + 1)
        assert not sweep.done()
    await asyncio.wait_for(batch, 10)
    assert await asyncio.wait_for(sweep, 10) == 0
    assert counted(metrics.EARLY_DISPATCH, "committed") == committed + 1
    tasks = await stack.tasks(run_id)
    assert (tasks["a"].status, tasks["a"].attempt) == ("succeeded", 1)
    assert (tasks["b"].status, tasks["b"].attempt) == ("ready", 1)
    await assert_eventually(lambda: len(held) == 2)  # handed on once the turn is over
    await stack.orchestrator.handlers.handle_batch([result(run_id, held[1].task_id)])
    assert (await stack.wait_run(run_id)).status == "succeeded"
    assert [(r.node_id, r.attempt) for r in held] == [("a", 1), ("b", 1)]
