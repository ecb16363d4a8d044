"""``cadenza_runtime.create_run``, the one path every run starts by: the run, its
``plan.requested`` and ``run.accepted`` outbox rows and its audit entry are stored alike
on PostgreSQL (ONE statement straight on asyncpg; ``alone``: no BEGIN or COMMIT either)
and on SQLite (the ORM), and commit with the caller's rows or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import TopicRegistry
from cadenza_runtime.runs import create_run
from cadenza_state import AuditLogEntry, OutboxMessage, RunRecord
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support.statements import watched

Sessions = async_sessionmaker[AsyncSession]
SPEC = {"name": "wf", "tasks": [{"id": "a", "tool": "noop"}]}


async def create(session: AsyncSession, **kwargs: Any) -> Any:
    arguments: dict[str, Any] = {
        "registry": TopicRegistry(prefix="t."),
        "tenant_id": "acme",
        "workflow_name": "wf",
        "workflow_version": 3,
        "spec": SPEC,
        "inputs": {"n": 1, "text": "é"},
        "idempotency_key": None,
        "actor": "alice",
        "source": "/tests",
        "budget": {"max_tokens": 10},
    }
    return await create_run(session=session, **(arguments | kwargs))


async def stored(sessions: Sessions, run_id: str) -> tuple[Any, list[Any], list[Any]]:
    async with sessions() as session:
        run = await session.get(RunRecord, run_id)
        outbox = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.key == run_id))
        ).all()
        audit = (
            await session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.subject == f"run:{run_id}")
            )
        ).all()
        return run, list(outbox), list(audit)


@pytest.mark.parametrize("alone", [True, False])
async def test_a_run_its_events_and_its_audit_entry_are_stored(
    sessions: Sessions, alone: bool
) -> None:
    async with sessions() as session, session.begin():
        created = await create(session, alone=alone, publisher="me")
    run, outbox, audit = await stored(sessions, created.run.id)
    assert run is not None
    for name in ("tenant_id", "workflow_name", "workflow_version", "spec", "inputs", "budget"):
        assert getattr(run, name) == getattr(created.run, name), name
    assert (run.status, run.version, run.output, run.idempotency_key) == ("pending", 0, None, None)
    assert run.created_at == created.run.created_at
    # The caller publishes what was staged: the ids it got are the rows' ids.
    assert sorted(m.id for m in outbox) == sorted(m.id for m in created.events)
    assert sorted(m.topic for m in outbox) == ["t.plan.requested", "t.run.events"]
    assert {m.publisher for m in outbox} == {"me"}
    assert [(a.actor, a.action, a.tenant_id) for a in audit] == [("alice", "run.created", "acme")]


@pytest.mark.integration
@pytest.mark.parametrize("db_settings", ["postgres"], indirect=True)
async def test_on_postgresql_alone_it_is_one_statement_without_a_transaction(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    with watched(engine) as (statements, begun):
        async with sessions() as session, session.begin():
            created = await create(session, alone=True)
    assert begun == []
    assert len(statements) == 1, statements
    assert "INSERT INTO runs" in statements[0]
    assert "INSERT INTO audit_log" in statements[0]
    assert "INSERT INTO outbox" in statements[0]
    assert (await stored(sessions, created.run.id))[0] is not None


async def test_a_taken_idempotency_key_writes_nothing_of_the_run_nor_the_callers_rows(
    sessions: Sessions,
) -> None:
    async with sessions() as session, session.begin():
        first = await create(session, idempotency_key="k1", alone=True)

    async def second_with_the_callers_row() -> None:
        async with sessions() as session, session.begin():
            # The caller's own row first (a trigger's dedupe row): it commits with the run
            # or not at all.
            session.add(AuditLogEntry(tenant_id="acme", actor="t", action="mark", subject="caller"))
            await create(session, idempotency_key="k1", run_id="second")

    with pytest.raises(IntegrityError):
        await second_with_the_callers_row()
    run, outbox, _ = await stored(sessions, "second")
    assert (run, outbox) == (None, [])
    async with sessions() as session:
        marks = (
            await session.scalars(select(AuditLogEntry).where(AuditLogEntry.subject == "caller"))
        ).all()
        assert marks == []
        assert (await session.get(RunRecord, first.run.id)) is not None


async def test_a_callers_row_that_fails_takes_the_run_with_it_even_asked_alone(
    sessions: Sessions,
) -> None:
    """``alone`` with rows the caller added before: they are flushed first, so the run's
    statement joins their transaction instead of committing on its own."""

    async def broken_caller_row_then_run() -> None:
        async with sessions() as session, session.begin():
            session.add(AuditLogEntry(tenant_id=None, actor="t", action="mark", subject="x"))
            await create(session, run_id="orphan", alone=True)

    with pytest.raises(IntegrityError):
        await broken_caller_row_then_run()
    run, outbox, audit = await stored(sessions, "orphan")
    assert (run, outbox, audit) == (None, [], [])
