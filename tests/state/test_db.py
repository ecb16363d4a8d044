"""Database conformance: one suite for PostgreSQL (fresh schema) and SQLite (tmp file)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cadenza_state import (
    AuditLogEntry,
    Base,
    OutboxMessage,
    RunRecord,
    RunStatus,
    StateSettings,
    TaskAttemptRecord,
    TaskRecord,
    TaskStatus,
    ToolEffectRecord,
    WorkflowRecord,
    alembic_config,
    create_engine,
    migrate,
)
from sqlalchemy import Connection, delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import assert_eventually

Sessions = async_sessionmaker[AsyncSession]
TABLES = {
    "workflows",
    "runs",
    "tasks",
    "task_attempts",
    "outbox",
    "tool_effects",
    "audit_log",
    "agents",
    "api_keys",
    "provider_keys",
    "tenant_budgets",
    "evaluations",
    "llm_calls",
    "tool_calls",
    "reference_records",
    "collections",
    "documents",
    "triggers",
    "triggered_events",
    "schedules",
    "schedule_fires",
    "approvals",
    "dead_letters",
    "deleted_runs",
}


def _run(run_id: str | None = None, **kw: Any) -> RunRecord:
    return RunRecord(
        id=run_id or str(uuid.uuid4()),
        tenant_id=kw.pop("tenant_id", "acme"),
        workflow_name="refund",
        workflow_version=1,
        spec={"tasks": [{"id": "a"}]},
        inputs={"amount": 10},
        **kw,
    )


def _task(run_id: str, node_id: str = "a", item_index: int | None = None) -> TaskRecord:
    suffix = "" if item_index is None else f"/{item_index}"
    return TaskRecord(
        id=f"{run_id}/{node_id}{suffix}",
        run_id=run_id,
        node_id=node_id,
        item_index=item_index,
        max_attempts=3,
    )


async def _add_all(sessions: Sessions, *rows: Base) -> None:
    async with sessions() as session, session.begin():
        session.add_all(rows)


# -- migrations ----------------------------------------------------------------------------


def _current_revision(conn: Connection) -> str | None:
    opts = {}
    if conn.dialect.name == "postgresql":
        opts["version_table_schema"] = conn.exec_driver_sql("SELECT current_schema()").scalar()
    return MigrationContext.configure(conn, opts=opts).get_current_revision()


async def test_migrate_reaches_head_and_is_idempotent(engine: AsyncEngine) -> None:
    await migrate(engine)  # second run: a no-op, not an error
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    async with engine.connect() as conn:
        assert await conn.run_sync(_current_revision) == head
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert names >= TABLES | {"alembic_version"}


async def test_concurrent_startups_migrate_once(db_settings: StateSettings) -> None:
    engines = [create_engine(db_settings) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(e) for e in engines))
        async with engines[0].connect() as conn:
            assert await conn.run_sync(_current_revision) is not None
    finally:
        for e in engines:
            await e.dispose()


def _diff(conn: Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(conn), Base.metadata)


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


@pytest.mark.parametrize(
    "db_settings", [pytest.param("postgres", marks=pytest.mark.integration)], indirect=True
)
async def test_postgres_tables_live_in_the_configured_schema(
    engine: AsyncEngine, unique_id: str
) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": unique_id},
        )
        assert {r[0] for r in rows} == TABLES | {"alembic_version"}


@pytest.mark.parametrize(
    "db_settings", [pytest.param("postgres", marks=pytest.mark.integration)], indirect=True
)
async def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    db_settings: StateSettings,
) -> None:
    """No pre-ping round trips, and still no error after the server drops a connection
    (what a PostgreSQL restart does to every pooled one)."""
    engine = create_engine(db_settings, pool_size=1, max_overflow=0)
    admin = create_engine(db_settings)
    try:
        async with engine.connect() as conn:
            first_pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            raw = await conn.get_raw_connection()
            pooled = raw.driver_connection
        async with admin.connect() as other:
            assert await other.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": first_pid})
        await assert_eventually(pooled.is_closed, timeout=5)  # the loop read the close
        async with engine.connect() as conn:  # the same pool slot: no error, a new backend
            assert await conn.scalar(text("SELECT pg_backend_pid()")) != first_pid
    finally:
        await engine.dispose()
        await admin.dispose()


# -- round trips ---------------------------------------------------------------------------


async def test_workflow_round_trip(sessions: Sessions) -> None:
    spec = {"tasks": [{"id": "a", "kind": "tool"}], "nested": {"ü": [1, 2.5, None, True]}}
    await _add_all(sessions, WorkflowRecord(tenant_id="acme", name="wf", version=1, spec=spec))
    async with sessions() as session:
        wf = (await session.scalars(select(WorkflowRecord))).one()
    assert isinstance(wf.id, uuid.UUID)
    assert wf.spec == spec
    assert wf.created_at.tzinfo is not None


async def test_run_round_trip_and_defaults(sessions: Sessions) -> None:
    run = _run(idempotency_key="evt-1")
    await _add_all(sessions, run)
    async with sessions() as session:
        got = await session.get(RunRecord, run.id)
    assert got is not None
    assert got.status == RunStatus.PENDING
    assert (got.inputs, got.output, got.error) == ({"amount": 10}, None, None)
    assert got.created_at.tzinfo == UTC
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert got.finished_at is None


async def test_run_update_bumps_updated_at_and_keeps_timezone(sessions: Sessions) -> None:
    run = _run()
    await _add_all(sessions, run)
    finished = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    async with sessions() as session, session.begin():
        got = await session.get(RunRecord, run.id)
        assert got is not None
        before = got.updated_at
        got.status, got.output, got.finished_at = RunStatus.SUCCEEDED, [1, "two"], finished
    async with sessions() as session:
        got = await session.get(RunRecord, run.id)
    assert got is not None
    assert got.output == [1, "two"]
    assert got.finished_at == finished
    assert got.updated_at >= before


async def test_naive_datetime_is_refused(sessions: Sessions) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        await _add_all(sessions, _run(finished_at=datetime(2030, 1, 1)))


async def test_task_attempt_effect_round_trip(sessions: Sessions) -> None:
    run = _run()
    task = _task(run.id, "fetch", item_index=2)
    task.input, task.output_ref = {"q": "x"}, "runs/r/out.json"
    now = datetime.now(UTC)
    attempt = TaskAttemptRecord(
        task_id=task.id, attempt=1, worker_id="w-1", status="succeeded", started_at=now
    )
    effect = ToolEffectRecord(
        task_id=task.id, attempt=1, call_index=0, tool="refund", result={"ok": True}
    )
    await _add_all(sessions, run, task, attempt, effect)
    async with sessions() as session:
        got = await session.get(TaskRecord, task.id)
        got_attempt = await session.get(TaskAttemptRecord, (task.id, 1))
        got_effect = await session.get(ToolEffectRecord, (task.id, 1, 0))
    assert got is not None
    assert got_attempt is not None
    assert got_effect is not None
    assert (got.status, got.attempt, got.item_index) == (TaskStatus.PENDING, 0, 2)
    assert (got.input, got.output_ref) == ({"q": "x"}, "runs/r/out.json")
    assert (got_attempt.started_at, got_attempt.error) == (now, None)
    assert got_effect.result == {"ok": True}


async def test_audit_log_round_trip(sessions: Sessions) -> None:
    entry = AuditLogEntry(
        tenant_id="acme", actor="key:ops", action="run.cancel", subject="run/1", data={"r": 1}
    )
    await _add_all(sessions, entry)
    async with sessions() as session:
        got = (await session.scalars(select(AuditLogEntry))).one()
    assert got.id >= 1
    assert (got.actor, got.action, got.subject, got.data) == (
        "key:ops",
        "run.cancel",
        "run/1",
        {"r": 1},
    )


async def test_outbox_row_round_trip(sessions: Sessions) -> None:
    payload = bytes(range(256))
    msg = OutboxMessage(topic="t", key=None, headers=[["ce_id", "1"]], payload=payload)
    await _add_all(sessions, msg)
    async with sessions() as session:
        got = (await session.scalars(select(OutboxMessage))).one()
    assert (got.payload, got.headers, got.published_at) == (payload, [["ce_id", "1"]], None)


# -- constraints ---------------------------------------------------------------------------


def _dup_rows(case: str, run_id: str) -> list[list[Base]]:
    """Batches to insert one after another; the last must violate a constraint."""
    wf = {"tenant_id": "acme", "name": "wf", "version": 1, "spec": {}}
    if case == "workflow version":
        return [[WorkflowRecord(**wf)], [WorkflowRecord(**wf)]]
    if case == "run idempotency key":
        return [[_run(idempotency_key="k")], [_run(idempotency_key="k")]]
    base: list[Base] = [_run(run_id)]
    if case == "task fan-out item":
        t2 = _task(run_id, "a", 0)
        t2.id = "other-id"
        return [[*base, _task(run_id, "a", 0)], [t2]]
    if case == "task single node":
        t2 = _task(run_id, "a")
        t2.id = "other-id"
        return [[*base, _task(run_id, "a")], [t2]]
    task_id = f"{run_id}/a"
    if case == "attempt recorded twice":
        att = {"task_id": task_id, "attempt": 1, "status": "succeeded"}
        return [[*base, _task(run_id), TaskAttemptRecord(**att)], [TaskAttemptRecord(**att)]]
    if case == "tool effect recorded twice":
        eff = {"task_id": task_id, "attempt": 1, "call_index": 0, "tool": "x"}
        return [[*base, _task(run_id), ToolEffectRecord(**eff)], [ToolEffectRecord(**eff)]]
    if case == "task of unknown run":
        return [[_task(run_id)]]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "workflow version",
        "run idempotency key",
        "task fan-out item",
        "task single node",
        "attempt recorded twice",
        "tool effect recorded twice",
        "task of unknown run",
    ],
)
async def test_constraint_is_enforced(sessions: Sessions, case: str) -> None:
    *ok, bad = _dup_rows(case, str(uuid.uuid4()))
    for batch in ok:
        await _add_all(sessions, *batch)
    with pytest.raises(IntegrityError):
        await _add_all(sessions, *bad)


async def test_null_keys_do_not_collide(sessions: Sessions) -> None:
    run_id = str(uuid.uuid4())
    await _add_all(sessions, _run(), _run(), _run(run_id))
    await _add_all(sessions, _task(run_id, "a", 0), _task(run_id, "a", 1), _task(run_id, "b"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(RunRecord)) == 3
        assert await session.scalar(select(func.count()).select_from(TaskRecord)) == 3


async def test_deleting_a_run_cascades_to_its_tasks(sessions: Sessions) -> None:
    run = _run()
    task = _task(run.id)
    await _add_all(sessions, run, task, TaskAttemptRecord(task_id=task.id, attempt=1, status="x"))
    async with sessions() as session, session.begin():
        await session.execute(delete(RunRecord))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(TaskRecord)) == 0
        assert await session.scalar(select(func.count()).select_from(TaskAttemptRecord)) == 0
