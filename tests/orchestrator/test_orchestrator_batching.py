"""The batched event path: a batch is one transaction, a run's timeline travels as a few
chunked records, duplicates inside one batch are applied once, and a batch of many runs'
results locks and writes with the statements of one."""

from __future__ import annotations

import contextvars
from collections import Counter
from typing import Any

import pytest
from cadenza_events import (
    Envelope,
    Message,
    PlanRequested,
    RunEventBatch,
    TaskReady,
    TaskResult,
    Topic,
    decode,
)
from cadenza_orchestrator import store
from cadenza_orchestrator.engine import TIMELINE_CHUNK
from cadenza_state import OutboxMessage
from orchestrator_stack import STACKS, UNIT, Reply, Stack
from sqlalchemy import event, select
from support import assert_eventually

unit_only = pytest.mark.parametrize(
    "stack", [pytest.param(UNIT, marks=pytest.mark.unit)], indirect=True
)


async def timeline_records(stack: Stack, run_id: str) -> list[Envelope[Any]]:
    async with stack.resources.sessions() as session:
        rows = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.topic == stack.resources.registry.name(Topic.RUN_EVENTS),
                    OutboxMessage.key == run_id,
                )
                .order_by(OutboxMessage.id)
            )
        ).all()
    return [
        decode(Message(r.topic, 0, 0, (r.key or "").encode(), r.payload, tuple(r.kafka_headers())))
        for r in rows
    ]


async def test_a_wide_fan_out_timeline_is_chunked_records(stack: Stack) -> None:
    width = 2 * TIMELINE_CHUNK + 10
    spec = {
        "name": "wide",
        "tasks": [{"id": "each", "tool": "noop", "for_each": f"list(range({width}))"}],
    }
    run_id = await stack.submit(spec)
    run = await stack.wait_run(run_id, timeout=60)
    assert run.status == "succeeded", run.error
    records = await timeline_records(stack, run_id)
    sizes = [
        len(env.payload.events) if isinstance(env.payload, RunEventBatch) else 1 for env in records
    ]
    assert max(sizes) <= TIMELINE_CHUNK  # never one giant record (Kafka refuses > 1 MB)
    ready = [e for e in await stack.run_events(run_id) if e.kind == "task.ready"]
    assert len(ready) == width
    assert len(records) < width  # batched: far fewer records than events


def hold_by_hand(stack: Stack) -> list[TaskReady]:
    """The fake worker answers nothing: the test answers each dispatched task itself."""
    held: list[TaskReady] = []

    def script(ready: TaskReady, params: dict[str, Any]) -> Reply:
        held.append(ready)
        return None

    stack.worker.script = script
    return held


def succeeded(ready: TaskReady, output: Any = 1) -> Envelope[TaskResult]:
    """The worker's result of a dispatched task (attempt 1)."""
    result = TaskResult(
        run_id=ready.run_id, task_id=ready.task_id, attempt=1, status="succeeded", output=output
    )
    return Envelope(payload=result, source="/tests", plan_id=ready.run_id, tenant_id="acme")


@unit_only
async def test_a_duplicate_result_inside_one_batch_is_applied_once(stack: Stack) -> None:
    held = hold_by_hand(stack)
    run_id = await stack.submit({"name": "dup", "tasks": [{"id": "a", "tool": "noop"}]})
    await assert_eventually(lambda: held)
    env = succeeded(held[0])
    await stack.orchestrator.handlers.handle_batch([env, env, env])
    run = await stack.wait_run(run_id)
    assert run.status == "succeeded", run.error
    attempts = await stack.attempts(run_id)
    assert [(a.attempt, a.status) for a in attempts] == [(1, "succeeded")]


BATCHED = (
    "SELECT runs.",
    "SELECT tasks.",
    "UPDATE runs",
    "INSERT INTO task_attempts",
    "UPDATE tasks",
    "INSERT INTO outbox",
)
"""Statements a batch makes once, whatever its number of runs (SQLite sends a bulk insert
with RETURNING row by row: its outbox inserts are not counted). On PostgreSQL the writes
are parts of one statement (``direct.Deferred``), counted part by part."""
WRITES = BATCHED[2:]

TWO_STEPS = {
    "name": "two-steps",
    "tasks": [{"id": "a", "tool": "noop"}, {"id": "b", "tool": "noop", "needs": ["a"]}],
}


MEASURED: contextvars.ContextVar[bool] = contextvars.ContextVar("measured", default=False)


@pytest.mark.parametrize("stack", STACKS, indirect=True)
async def test_a_batch_of_many_runs_costs_the_statements_of_one(stack: Stack) -> None:
    """Results of several runs in one batch: each run moves on as if alone, and the batch
    locks, reads and writes with as many statements as a batch of one run's result (runs
    locked together, the results' rows read with the next tasks' rows, attempts recorded
    together, writes made together)."""
    held = hold_by_hand(stack)
    runs = [await stack.submit(TWO_STEPS) for _ in range(4)]
    await assert_eventually(lambda: len(held) == 4)
    # The plans' hot statuses may still linger on a pipeline of their own: sent now, so the
    # batches below start theirs.
    await stack.orchestrator.handlers.settle()
    statements: list[str] = []
    # Only what this test's own batches run (their after-commit work too, a task they start
    # with their context): the orchestrator's background loops (the outbox relay's recovery
    # scan, the sweeper, its consumer) share the engine and the Redis client.
    MEASURED.set(True)

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if MEASURED.get():
            statements.append(statement)

    engine = stack.resources.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    hot = stack.resources.hot
    pipelines: list[object] = []
    real_pipeline = hot.redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        if MEASURED.get():
            pipelines.append(args)
        return real_pipeline(*args, **kwargs)

    hot.redis.pipeline = counting_pipeline  # type: ignore[method-assign]

    async def answer(step: str, run_ids: list[str]) -> Counter[str]:
        """The batch's statements by kind: the locks of run rows and every write."""
        statements.clear()
        pipelines.clear()
        ready = {r.run_id: r for r in held if r.node_id == step}
        batch = [succeeded(ready[run_id], output=step) for run_id in run_ids]
        # The runs as a process that did not plan them sees them (test_run_memory.py has
        # the batches of runs held in memory, which read nothing).
        stack.orchestrator.handlers.memory.forget(run_ids)
        await stack.orchestrator.handlers.handle_batch(batch)
        assert len(pipelines) == 1  # every run's hot status in one Redis round trip
        if postgres:  # applied without a lock: the attempts recorded before come with the
            # rows, and ONE statement makes every write, the new attempts a part of it
            writes = [sql for sql in statements if any(k in sql for k in WRITES)]
            assert len(writes) == 1, writes
            assert "INSERT INTO task_attempts" in writes[0]
        return Counter(
            kind
            for sql in statements
            for kind in BATCHED
            for _ in range(sql.count(kind) if postgres else sql.startswith(kind))
            if kind != "INSERT INTO outbox" or postgres
        )

    postgres = stack.resources.state.engine.dialect.name == "postgresql"
    try:
        one = await answer("a", runs[:1])
        reads = {sql for sql in statements if sql.startswith("SELECT")}
        assert one["SELECT runs."] == one["INSERT INTO task_attempts"] == 1
        assert one["SELECT tasks."] == 1  # `b`'s row came with `a`'s: no read per run
        assert await answer("a", runs[1:]) == one
        if postgres:  # one text per query whatever the number of ids: asyncpg prepares each
            assert {sql for sql in statements if sql.startswith("SELECT")} == reads
        await assert_eventually(lambda: len(held) == 8)  # every run dispatched its `b`
        finish_one = await answer("b", runs[:1])
        assert finish_one["UPDATE runs"] == 1  # the run finished
        assert await answer("b", runs[1:]) == finish_one
    finally:
        event.remove(engine, "before_cursor_execute", count)
        hot.redis.pipeline = real_pipeline  # type: ignore[method-assign]
    for run_id in runs:
        status = await hot.get_run_status(run_id)
        assert status is not None
        assert (status["status"], status["tasks_total"], status["tasks_done"]) == (
            "succeeded",
            "2",
            "2",
        )
        run = await stack.wait_run(run_id)
        assert (run.status, run.output) == ("succeeded", None), run.error
        attempts = await stack.attempts(run_id)
        assert [(a.attempt, a.status) for a in attempts] == [(1, "succeeded")] * 2
        statuses = {t.node_id: t.status for t in (await stack.tasks(run_id)).values()}
        assert statuses == {"a": "succeeded", "b": "succeeded"}


@pytest.mark.parametrize("stack", STACKS, indirect=True)
async def test_lock_runs_loads_the_spec_only_of_the_runs_that_need_it(stack: Stack) -> None:
    first, second = await stack.submit(TWO_STEPS), await stack.submit(TWO_STEPS)
    async with stack.resources.sessions() as session, session.begin():
        runs = await store.lock_runs(session, [second, first, "no-such-run"], with_spec=[second])
        assert sorted(runs) == sorted([first, second])
        assert (runs[first].spec, runs[first].inputs) == (None, None)  # graph cached: not read
        assert runs[second].spec == TWO_STEPS
        assert runs[second].inputs == {}
        assert runs[first].workflow_name == runs[second].workflow_name == TWO_STEPS["name"]
    async with stack.resources.sessions() as session, session.begin():
        both = await store.lock_runs(session, [first, second], with_spec=[first, second])
        assert [both[r].spec for r in (first, second)] == [TWO_STEPS, TWO_STEPS]


@pytest.mark.parametrize("stack", STACKS, indirect=True)
async def test_a_batch_mixing_a_plan_a_cold_run_and_a_cached_one_moves_each_on(
    stack: Stack,
) -> None:
    """One batch: a result of a run whose graph is cached (its spec is not read), a result
    of a run whose graph was evicted (read again), and a new run's plan.requested. The
    batch locks all three at once and loads the spec of the two that need it."""
    held = hold_by_hand(stack)
    cached, cold = await stack.submit(TWO_STEPS), await stack.submit(TWO_STEPS)
    await assert_eventually(lambda: len(held) == 2)
    stack.orchestrator.handlers.graphs.forget(cold)
    fresh = await stack.submit(TWO_STEPS, publish_times=0)  # its plan.requested comes below
    plan = PlanRequested(run_id=fresh, workflow_name="two-steps", spec=TWO_STEPS, inputs={})
    await stack.orchestrator.handlers.handle_batch(
        [
            *(succeeded(r) for r in held),
            Envelope(payload=plan, source="/tests", plan_id=fresh, tenant_id="acme"),
        ]
    )
    await assert_eventually(lambda: len(held) == 5)
    assert sorted((r.run_id, r.node_id) for r in held[2:]) == sorted(
        [(cached, "b"), (cold, "b"), (fresh, "a")]
    )
    await stack.orchestrator.handlers.handle_batch([succeeded(r) for r in held[2:]])
    await assert_eventually(lambda: len(held) == 6)  # the new run's `b`
    await stack.orchestrator.handlers.handle_batch([succeeded(held[5])])
    for run_id in (cached, cold, fresh):
        assert (await stack.wait_run(run_id)).status == "succeeded"
