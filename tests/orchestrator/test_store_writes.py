"""``store.update_tasks`` writes each row's own values of the columns a batch set, on both
backends (PostgreSQL: one ``UPDATE … FROM unnest``; SQLite: an executemany); run rows are
locked as plain ``RunRow``s and their changes written by ``store.update_runs``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cadenza_orchestrator import TaskRow, store
from cadenza_state import RunRecord
from cadenza_state.types import dumps_in_jsonb_key_order
from orchestrator_stack import INTEGRATION, STACKS, Stack
from sqlalchemy import text


def _row(run_id: str, node: str, **values: object) -> TaskRow:
    row = TaskRow(id=f"{run_id}.{node}", run_id=run_id, node_id=node, item_index=None,
                  status="pending", attempt=0, max_attempts=3, input={"n": node},
                  updated_at=datetime(2026, 12, 5, tzinfo=UTC))  # fmt: skip
    for name, value in values.items():
        setattr(row, name, value)
    return row


async def test_update_tasks_writes_each_rows_own_columns(stack: Stack) -> None:
    run_id = str(uuid.uuid4())
    now = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    untouched = _row(run_id, "c", output={"kept": True}, worker_id="w-0")
    rows = [_row(run_id, "a"), _row(run_id, "b", error={"code": "x"}), untouched]
    async with stack.resources.sessions() as session, session.begin():
        session.add(RunRecord(id=run_id, tenant_id="acme", workflow_name="w", spec={},
                              inputs={}, status="running"))  # fmt: skip
        await session.flush()
        await store.insert_tasks(session, rows)

    a, b, _ = rows
    # Numbers and key order as a client sent them (json, not jsonb); None is SQL NULL.
    a.status, a.attempt, a.ready_at = "succeeded", 1, now
    a.output = {"zz": 1e308, "a": -0.0, "big": 2**70, "nested": {"yy": [1, {"b": 2, "a": 1}]}}
    a.finished_at, a.worker_id = now + timedelta(seconds=1), "w-1"
    b.status, b.attempt, b.error, b.started_at = "ready", 2, None, now
    changed = {a.id: {"status", "attempt", "ready_at", "output", "finished_at", "worker_id"},
               b.id: {"status", "attempt", "error", "started_at"}}  # fmt: skip
    async with stack.resources.sessions() as session, session.begin():
        await store.update_tasks(session, changed, {a.id: a, b.id: b})
    async with stack.resources.sessions() as session:
        loaded = await store.load_tasks_by_id(session, [r.id for r in rows])
        raw = dict(
            (await session.execute(
                text("SELECT id, CAST(output AS TEXT) FROM tasks WHERE run_id = :r"), {"r": run_id}
            )).all()
        )  # fmt: skip
        nulls = dict(
            (await session.execute(
                text("SELECT id, error IS NULL FROM tasks WHERE run_id = :r"), {"r": run_id}
            )).all()
        )  # fmt: skip

    got_a, got_b, got_c = loaded[a.id], loaded[b.id], loaded[untouched.id]
    assert (got_a.status, got_a.attempt, got_a.worker_id) == ("succeeded", 1, "w-1")
    assert got_a.ready_at == now
    assert got_a.finished_at == now + timedelta(seconds=1)
    assert got_a.output == a.output
    if stack.kind == INTEGRATION:  # the PostgreSQL engine's serializer, as inserts write it
        assert raw[a.id] == dumps_in_jsonb_key_order(a.output)
    assert "-0.0" in raw[a.id]
    assert "1e+308" in raw[a.id]
    assert got_a.input == {"n": "a"}  # a column nobody set keeps its value
    assert (got_b.status, got_b.attempt, got_b.started_at) == ("ready", 2, now)
    assert nulls[b.id]  # JSON None is SQL NULL (IS NULL filters rely on it)
    assert got_b.output is None
    assert (got_c.status, got_c.output, got_c.worker_id) == ("pending", {"kept": True}, "w-0")


async def _run_row(stack: Stack, **values: object) -> str:
    run_id = str(uuid.uuid4())
    async with stack.resources.sessions() as session, session.begin():
        session.add(RunRecord(id=run_id, tenant_id="acme", workflow_name="w", spec={"n": 1},
                              inputs={"i": 2}, status="running", **values))  # fmt: skip
    return run_id


async def test_a_runs_changes_are_written_with_updated_at(stack: Stack) -> None:
    """A RunRow names what was set on it since the load; ``update_runs`` writes exactly that
    (and ``updated_at``), and every call moves the run's version on — a batch that changed
    none of its columns still changed its task rows."""
    run_id = await _run_row(stack, budget={"max_usd": 1.0})
    now = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    async with stack.resources.sessions() as session, session.begin():
        run = (await store.lock_runs(session, [run_id], with_spec=[run_id]))[run_id]
        assert (run.spec, run.inputs, run.budget) == ({"n": 1}, {"i": 2}, {"max_usd": 1.0})
        run.status = "running"  # the value it had: no change
        assert run.changes() == {}
        run.status, run.error = "failed", {"code": "boom"}
        run.output, run.finished_at = {"zz": 1, "a": [1.5, None]}, now
        assert set(run.changes()) == {"status", "error", "output", "finished_at"}
        assert run.version == 0
        await store.update_runs(session, [run], now=now)
        assert run.changes() == {}
        assert run.version == 1
        await store.update_runs(session, [run], now=now + timedelta(hours=1))  # no change left
        assert run.version == 2
    async with stack.resources.sessions() as session:
        stored = await session.get(RunRecord, run_id)
        assert stored is not None
        assert (stored.status, stored.error, stored.finished_at) == (
            "failed",
            {"code": "boom"},
            now,
        )
        assert stored.output == {"zz": 1, "a": [1.5, None]}
        assert stored.budget == {"max_usd": 1.0}  # not set: kept
        assert stored.updated_at == now + timedelta(hours=1)  # the second call: its time
        assert stored.version == 2


@pytest.mark.parametrize("stack", [STACKS[1]], indirect=True)  # row locks: PostgreSQL's
async def test_a_run_another_transaction_holds_is_skipped_when_asked(stack: Stack) -> None:
    run_id = await _run_row(stack)
    async with stack.resources.sessions() as holder, holder.begin():
        assert (await store.lock_runs(holder, [run_id]))[run_id].status == "running"
        async with stack.resources.sessions() as other, other.begin():
            assert await store.lock_run(other, run_id, skip_locked=True) is None
    async with stack.resources.sessions() as session, session.begin():
        run = await store.lock_run(session, run_id, skip_locked=True)
        assert run is not None
        assert run.spec == {"n": 1}  # lock_run reads the spec unless told not to
