"""Run history retention, on SQLite and the memory bus and on PostgreSQL, Kafka and MinIO:
the runs that finished before the cutoff go whole (rows, objects, checkpoints), the others
stay, a pass pages and keeps to the runs this orchestrator owns, and a pass that fails
half-way deletes no row whose objects are still there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cadenza_events import TaskReady, TaskResult
from cadenza_orchestrator import retention as retention_module
from cadenza_orchestrator.retention import Retention, cutoff
from cadenza_state import (
    AuditLogEntry,
    DeadLetterRecord,
    DeletedRunRecord,
    LLMCallRecord,
    RunRecord,
    TaskAttemptRecord,
    TaskRecord,
    utcnow,
)
from cadenza_state.checkpoints import thread_id
from cadenza_worker.agents.checkpoints import open_checkpointer
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from orchestrator_stack import Reply, Stack, publish_result
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from support import assert_eventually

SPEC = {
    "name": "two",
    "tasks": [
        {"id": "a", "tool": "transform", "with": {}},
        {"id": "b", "tool": "transform", "with": {}, "needs": ["a"]},
    ],
}
PASSES = "cadenza_orchestrator_retention_passes_total"
LATER = timedelta(days=100)  # a pass "100 days from now": today's runs are long finished


@pytest.mark.unit
@pytest.mark.parametrize(
    ("now", "days", "expected"),
    [
        # retention_days ago, when that is before the month began
        (datetime(2026, 12, 20, 9, tzinfo=UTC), 30, datetime(2026, 11, 20, 9, tzinfo=UTC)),
        # never later than the start of the month: tenant month budgets count those runs
        (datetime(2026, 12, 20, 9, tzinfo=UTC), 10, datetime(2026, 12, 1, tzinfo=UTC)),
        (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), 0.5, datetime(2026, 2, 28, 12, tzinfo=UTC)),
    ],
)
def test_the_cutoff_keeps_every_run_the_current_month_budgets_count(
    now: datetime, days: float, expected: datetime
) -> None:
    assert cutoff(now, days) == expected


@asynccontextmanager
async def checkpointer(stack: Stack) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """The agent worker's checkpointer on the stack's database."""
    async with open_checkpointer(stack.resources.state.settings) as saver:
        yield saver


def _config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


async def _finished_runs(stack: Stack, n: int) -> list[str]:
    runs = [await stack.submit(SPEC) for _ in range(n)]
    for run_id in runs:
        await stack.wait_run(run_id, "succeeded")
    return runs


async def _count(stack: Stack, model: Any, run_ids: list[str]) -> int:
    async with stack.resources.sessions() as session:
        if model is TaskAttemptRecord:
            stmt: Any = (
                select(func.count())
                .select_from(TaskAttemptRecord)
                .join(TaskRecord, TaskRecord.id == TaskAttemptRecord.task_id)
                .where(TaskRecord.run_id.in_(run_ids))
            )
        else:
            stmt = select(func.count()).select_from(model).where(model.run_id.in_(run_ids))
        return int(await session.scalar(stmt) or 0)


async def _runs_left(stack: Stack, run_ids: list[str]) -> set[str]:
    async with stack.resources.sessions() as session:
        found = await session.scalars(select(RunRecord.id).where(RunRecord.id.in_(run_ids)))
        return set(found)


async def _llm_call(stack: Stack, run_id: str, task_id: str) -> None:
    async with stack.resources.sessions() as session, session.begin():
        session.add(
            LLMCallRecord(
                tenant_id="acme",
                run_id=run_id,
                task_id=task_id,
                attempt=1,
                turn=0,
                agent="writer",
                provider="embedded",
                model="tiny",
                request={},
                status="ok",
            )
        )


async def test_runs_finished_before_the_cutoff_are_deleted_whole(stack: Stack) -> None:
    """Rows (run, tasks, attempts, LLM calls), objects under ``runs/{id}/`` and agent
    checkpoints of the old runs go, with one audit entry naming them and a tombstone each; a
    running run and everything of it stays, and so does every run while the cutoff is not
    past it."""
    await stack.restart_orchestrator(retention_days=30)

    async def hold_c(ready: TaskReady, params: dict[str, Any]) -> Reply:
        return None if ready.node_id == "c" else {"output": params}

    old = await _finished_runs(stack, 2)
    stack.worker.script = hold_c
    live = await stack.submit({"name": "held", "tasks": [{"id": "c", "tool": "transform"}]})
    await assert_eventually(lambda: stack.worker.by_node("c"))
    every = [*old, live]
    objects = stack.resources.objects
    tasks = {run_id: next(iter((await stack.tasks(run_id)).values())) for run_id in every}
    async with checkpointer(stack) as saver:
        for run_id in every:
            await objects.put(f"runs/{run_id}/tasks/x/1/output.json", b"{}")
            await objects.put(f"runs/{run_id}/tasks/x/params.json", b"{}")
            await _llm_call(stack, run_id, tasks[run_id].id)
            thread = thread_id(tasks[run_id].id, 1)
            await saver.aput(_config(thread), empty_checkpoint(), {}, {})

        # Today: every run finished this month, nothing is past the cutoff.
        assert (await stack.orchestrator.prune_once()).runs == 0
        assert await _runs_left(stack, every) == set(every)

        pruned = await stack.orchestrator.prune_once(utcnow() + LATER)
        assert (pruned.runs, pruned.objects) == (2, 4)
        assert pruned.checkpoints >= 2
        assert await _runs_left(stack, every) == {live}
        for model in (TaskRecord, TaskAttemptRecord, LLMCallRecord):
            assert await _count(stack, model, old) == 0, model
        assert await _count(stack, TaskRecord, [live]) == 1
        assert await _count(stack, LLMCallRecord, [live]) == 1
        for run_id in old:
            assert not await objects.exists(f"runs/{run_id}/tasks/x/params.json")
            assert await saver.aget_tuple(_config(thread_id(tasks[run_id].id, 1))) is None
        assert await objects.exists(f"runs/{live}/tasks/x/params.json")
        assert await saver.aget_tuple(_config(thread_id(tasks[live].id, 1))) is not None

    async with stack.resources.sessions() as session:
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.action == "runs.deleted")
            )
        ).all()
        tombstones = (await session.scalars(select(DeletedRunRecord))).all()
    assert [(a.tenant_id, a.actor, sorted(a.data["run_ids"])) for a in audit] == [
        ("acme", "system:retention", sorted(old))
    ]
    # A tombstone per deleted run (the API's 410), with when it had finished.
    assert sorted((t.id, t.tenant_id, t.reason) for t in tombstones) == [
        (run_id, "acme", "retention") for run_id in sorted(old)
    ]
    assert all(t.finished_at is not None and t.deleted_at is not None for t in tombstones)
    # Again: nothing left to delete.
    assert (await stack.orchestrator.prune_once(utcnow() + LATER)).runs == 0


async def test_a_pass_pages_and_keeps_to_the_runs_it_owns(stack: Stack) -> None:
    """Pages of two over five finished runs: one pass reaches them all, and deletes only
    those its ``owns`` says this process writes; the owner of the others deletes them."""
    runs = await _finished_runs(stack, 5)
    settings = stack.settings.model_copy(update={"retention_days": 30, "retention_batch_size": 2})
    mine = set(runs[::2])
    first = await Retention(stack.resources.state, settings, owns=mine.__contains__).prune_once(
        utcnow() + LATER
    )
    assert (first.runs, first.examined) == (3, 5)
    assert await _runs_left(stack, runs) == set(runs) - mine
    other = await Retention(stack.resources.state, settings, owns=lambda run_id: True).prune_once(
        utcnow() + LATER
    )
    assert (other.runs, other.examined) == (2, 2)
    assert await _runs_left(stack, runs) == set()


async def test_resolved_dead_letters_go_after_the_days_and_pending_ones_stay(
    stack: Stack,
) -> None:
    """Replayed or discarded letters resolved more than ``retention_days`` ago go, a page at
    a time with an audit entry per tenant and page; a pending letter stays however old, and
    so does one resolved recently. Dead letters follow the days, not the budgets' month."""
    now = utcnow()
    letters = {
        "discarded-old": ("acme", "discarded", now - timedelta(days=40)),
        "replayed-old": ("acme", "replayed", now - timedelta(days=31)),
        "globex-old": ("globex", "discarded", now - timedelta(days=60)),
        "discarded-new": ("acme", "discarded", now - timedelta(days=29)),
        "pending-old": ("acme", "pending", None),
    }
    ids: dict[str, int] = {}
    async with stack.resources.sessions() as session, session.begin():
        for offset, (name, (tenant, status, resolved)) in enumerate(letters.items()):
            row = DeadLetterRecord(
                tenant_id=tenant,
                original_topic="cadenza.task.result",
                partition=0,
                offset=offset,
                consumer_group="g",
                value=b"{}",
                reason=name,
                error_code="decode",
                attempts=1,
                failed_at=now - timedelta(days=90),
                status=status,
                resolved_at=resolved,
            )
            session.add(row)
            await session.flush()
            ids[name] = row.id
    settings = stack.settings.model_copy(update={"retention_days": 30, "retention_batch_size": 2})
    retention = Retention(stack.resources.state, settings)
    before = REGISTRY.get_sample_value("cadenza_orchestrator_retention_dead_letters_deleted_total")

    assert (await retention.due(now)).dead_letters == 3
    pruned = await retention.prune_once(now)

    assert pruned.dead_letters == 3
    async with stack.resources.sessions() as session:
        left = set(await session.scalars(select(DeadLetterRecord.reason)))
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.action == "dead_letters.deleted")
            )
        ).all()
    assert left == {"discarded-new", "pending-old"}
    named = sorted((a.tenant_id, i) for a in audit for i in a.data["ids"])
    assert named == sorted(
        [
            ("acme", ids["discarded-old"]),
            ("acme", ids["replayed-old"]),
            ("globex", ids["globex-old"]),
        ]
    )
    assert all(a.actor == "system:retention" for a in audit)
    after = REGISTRY.get_sample_value("cadenza_orchestrator_retention_dead_letters_deleted_total")
    assert (after or 0) - (before or 0) == 3
    assert (await retention.prune_once(now)).dead_letters == 0


@pytest.mark.parametrize("fails", ["object_store", "database"])
async def test_a_pass_that_fails_half_way_deletes_no_row_and_the_next_finishes(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """Objects go before rows. While the object store refuses, the runs and their objects
    stay; when the database fails after the objects went, the rows stay (their page's
    transaction never began) and no object is left that no row points to. Either way the
    next pass deletes them."""
    runs = await _finished_runs(stack, 2)
    for run_id in runs:
        await stack.resources.objects.put(f"runs/{run_id}/out.json", b"{}")

    async def down(*args: Any) -> int:
        raise ConnectionRefusedError(f"{fails} down")

    if fails == "object_store":
        monkeypatch.setattr(stack.resources.state.objects, "delete_prefix", down)
    else:
        monkeypatch.setattr(retention_module, "delete_checkpoint_threads", down)
    retention = Retention(
        stack.resources.state, stack.settings.model_copy(update={"retention_days": 30})
    )
    with pytest.raises(ConnectionRefusedError):
        await retention.prune_once(utcnow() + LATER)
    assert await _runs_left(stack, runs) == set(runs)
    objects_kept = await stack.resources.objects.exists(f"runs/{runs[0]}/out.json")
    assert objects_kept == (fails == "object_store")
    monkeypatch.undo()
    again = await retention.prune_once(utcnow() + LATER)
    assert (again.runs, again.objects) == (2, 2 if objects_kept else 0)
    assert await _runs_left(stack, runs) == set()
    assert not await stack.resources.objects.exists(f"runs/{runs[0]}/out.json")


async def test_a_late_result_of_a_deleted_run_is_ignored(stack: Stack) -> None:
    """A result redelivered after its run was deleted changes nothing and stops nothing:
    the run stays deleted and the next run finishes."""
    (run_id,) = await _finished_runs(stack, 1)
    last = stack.worker.results[-1]
    retention = Retention(
        stack.resources.state, stack.settings.model_copy(update={"retention_days": 30})
    )
    assert (await retention.prune_once(utcnow() + LATER)).runs == 1
    await publish_result(stack.resources, TaskResult.model_validate(last.model_dump()))
    after = await stack.submit(SPEC)
    await stack.wait_run(after, "succeeded")
    assert await _runs_left(stack, [run_id]) == set()


async def test_the_orchestrator_passes_every_interval_only_while_retention_is_on(
    stack: Stack,
) -> None:
    """Off by default (every run kept: no loop at all); with ``retention_days`` set, a pass
    every ``retention_interval_s``, each counted, and the last success's time exported."""

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    assert stack.orchestrator._pruning is None
    before = sample(PASSES, outcome="ok")
    await stack.restart_orchestrator(retention_days=30, retention_interval_s=0.05)
    await assert_eventually(lambda: sample(PASSES, outcome="ok") >= before + 2)
    assert sample("cadenza_orchestrator_retention_last_success_timestamp_seconds") > 0
