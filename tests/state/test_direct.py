"""Statements straight on asyncpg (``cadenza_state.direct``): an unnest insert stores exactly
what a Core insert stores, keeps the rows' order, skips conflicts, runs inside the session's
transaction, and is seen by SQLAlchemy's statement observers. PostgreSQL only: SQLite
callers keep their portable statements."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from cadenza_runtime import is_outage
from cadenza_state import (
    OutboxMessage,
    RunRecord,
    TaskAttemptRecord,
    TaskRecord,
    direct,
    insert_many,
)
from sqlalchemy import Table, event, insert, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import assert_eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("db_settings", ["postgres"], indirect=True),
]

Sessions = async_sessionmaker[AsyncSession]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
ATTEMPTS: Table = TaskAttemptRecord.__table__  # type: ignore[assignment]
TASKS: Table = TaskRecord.__table__  # type: ignore[assignment]

DOCUMENTS: list[Any] = [  # outbox headers may not be NULL: attempts' errors test that
    {"zz": 1e308, "a": -0.0, "nested": {"bb": [1, 2.5, None], "a": "é\u0001"}},
    [["ce_id", "x"], ["ce_subject", "{y}"]],
    "text",
]
AT = datetime(2026, 12, 5, 11, 30, 0, 654321, tzinfo=UTC)


def _outbox_rows(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "topic": "task.ready",
            "key": None if i % 3 == 0 else f"{prefix}{i}",
            "headers": DOCUMENTS[i % len(DOCUMENTS)],
            "payload": b"\x00p%d\xff" % i,
            "published_at": None if i % 2 else AT,
            "publisher": prefix,
        }
        for i in range(n)
    ]


async def test_an_unnest_insert_stores_what_a_core_insert_stores(sessions: Sessions) -> None:
    n = 8
    async with sessions() as session, session.begin():
        await session.execute(insert(OUTBOX), _outbox_rows("core", n))
        await direct.insert_rows(session, OUTBOX, _outbox_rows("direct", n))
    async with sessions() as session:
        rows = (
            await session.execute(
                select(
                    OUTBOX.c.publisher,
                    OUTBOX.c.key,
                    text("CAST(headers AS TEXT)"),  # the stored text: key order, -0.0, 1e308
                    OUTBOX.c.payload,
                    OUTBOX.c.published_at,
                ).order_by(OUTBOX.c.id)
            )
        ).all()
    core = [r[1:] for r in rows if r[0] == "core"]
    stored = [r[1:] for r in rows if r[0] == "direct"]
    assert len(core) == len(stored) == n
    for i, (ours, theirs) in enumerate(zip(stored, core, strict=True)):
        key, headers, payload, published_at = theirs
        expected_key = key if key is None else key.replace("core", "direct")
        assert ours == (expected_key, headers, payload, published_at), i
    assert (stored[0][3], stored[1][3]) == (AT, None)
    assert (stored[0][0], stored[1][0]) == (None, "direct1")


async def test_inserted_rows_keep_the_given_order(sessions: Sessions) -> None:
    n = 300
    async with sessions() as session, session.begin():
        returned = await direct.insert_rows(
            session, OUTBOX, _outbox_rows("order", n), returning=("id", "payload")
        )
    assert [payload for _, payload in sorted(returned)] == [b"\x00p%d\xff" % i for i in range(n)]


async def _tasks(sessions: Sessions, ids: list[str]) -> None:
    async with sessions() as session, session.begin():
        run = RunRecord(tenant_id="t", workflow_name="w", spec={}, inputs={}, status="running")
        session.add(run)
        await session.flush()
        rows = [
            {"id": i, "run_id": run.id, "node_id": i, "status": "ready", "max_attempts": 3}
            for i in ids
        ]
        await insert_many(session, TASKS, rows)


def _attempt(task_id: str, attempt: int, error: Any = None) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "attempt": attempt,
        "status": "failed" if error else "succeeded",
        "worker_id": None,
        "started_at": AT,
        "finished_at": None,
        "error": error,
    }


async def test_conflicting_rows_are_skipped_and_not_returned(sessions: Sessions) -> None:
    await _tasks(sessions, ["a", "b"])
    keys = ("task_id", "attempt")
    async with sessions() as session, session.begin():
        first = await direct.insert_rows(
            session,
            ATTEMPTS,
            [_attempt("a", 1), _attempt("b", 1, {"code": "x"})],
            returning=keys,
            skip_conflicts_on=keys,
        )
    async with sessions() as session, session.begin():
        again = await direct.insert_rows(
            session,
            ATTEMPTS,
            [_attempt("a", 1, {"code": "late"}), _attempt("a", 2)],
            returning=keys,
            skip_conflicts_on=keys,
        )
    assert sorted(tuple(r) for r in first) == [("a", 1), ("b", 1)]
    assert [tuple(r) for r in again] == [("a", 2)]
    async with sessions() as session:
        stored = (
            await session.execute(
                select(ATTEMPTS.c.task_id, ATTEMPTS.c.attempt, ATTEMPTS.c.error).order_by(
                    ATTEMPTS.c.task_id, ATTEMPTS.c.attempt
                )
            )
        ).all()
    # None is SQL NULL (the column's none_as_null), not JSON null
    assert [tuple(r) for r in stored] == [("a", 1, None), ("a", 2, None), ("b", 1, {"code": "x"})]
    async with sessions() as session:
        nulls = await session.scalar(text("SELECT count(*) FROM task_attempts WHERE error IS NULL"))
    assert nulls == 2


async def test_direct_statements_run_in_the_sessions_transaction(sessions: Sessions) -> None:
    """Even as a transaction's FIRST statement (SQLAlchemy's adapter begins its transaction
    lazily, with the first statement it runs itself): a rollback undoes it."""
    count = "SELECT count(*) FROM outbox WHERE publisher = $1"
    async with sessions() as session:
        async with session.begin():
            await direct.insert_rows(session, OUTBOX, _outbox_rows("undone", 4))
            (seen,) = await direct.fetch(session, count, "undone")
            assert seen[0] == 4  # its own uncommitted rows
            await session.rollback()
        async with session.begin():
            (after,) = await direct.fetch(session, count, "undone")
            await direct.execute(session, "DELETE FROM outbox WHERE publisher = $1", "x")
        async with session.begin():  # a lock taken by a first statement is held
            await direct.fetch(session, "SELECT id FROM outbox FOR UPDATE")
            (locks,) = await direct.fetch(
                session,
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND mode = $1",
                "RowShareLock",
            )
    assert after[0] == 0
    assert locks[0] >= 1


async def test_a_lost_connection_is_an_outage_and_is_replaced(sessions: Sessions) -> None:
    """A direct statement on a connection the server dropped raises what SQLAlchemy's own
    execution raises (``is_outage`` says so: consumers pause instead of dead-lettering), and
    the pool hands out a working connection next."""
    async with sessions() as session:
        transaction = await session.begin()
        (pid,) = await direct.fetch(session, "SELECT pg_backend_pid()")
        async with sessions() as killer, killer.begin():
            await killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid[0]})
        with pytest.raises(sa_exc.DBAPIError) as raised:
            await direct.fetch(session, "SELECT 1")
        await transaction.rollback()
    assert is_outage(raised.value)
    assert raised.value.connection_invalidated
    async with sessions() as session, session.begin():
        (one,) = await direct.fetch(session, "SELECT 1")
    assert one[0] == 1


async def test_an_alone_statement_with_nothing_begun_leaves_the_session_untouched(
    sessions: Sessions,
) -> None:
    """No transaction begun: the statement runs on a pooled connection of its own, given
    back as soon as it returns, and the session begins nothing (no autobegin, no checkout,
    nothing to commit or close). Begun: the statement runs on the session's connection."""
    engine = sessions.kw["bind"]
    async with sessions() as session:
        (mine,) = await direct.fetch(session, "SELECT pg_backend_pid()", alone=True)
        assert not session.in_transaction()
        assert engine.pool.checkedout() == 0
        async with session.begin():
            (theirs,) = await direct.fetch(session, "SELECT pg_backend_pid()")
            (joined,) = await direct.fetch(session, "SELECT pg_backend_pid()", alone=True)
            assert engine.pool.checkedout() == 1
    assert joined[0] == theirs[0]
    assert isinstance(mine[0], int)


async def test_an_alone_statement_that_loses_its_connection_is_an_outage(
    sessions: Sessions,
) -> None:
    """The same errors as on the session's connection: the server ends the backend under
    the statement, the caller gets a DBAPIError flagged ``connection_invalidated`` (an
    outage: consumers pause), the dead connection leaves the pool, and the next statement
    runs on a new one."""
    engine = sessions.kw["bind"]
    async with sessions() as session:
        with pytest.raises(sa_exc.DBAPIError) as raised:
            await direct.fetch(session, "SELECT pg_terminate_backend(pg_backend_pid())", alone=True)
        assert not session.in_transaction()
    assert is_outage(raised.value)
    assert raised.value.connection_invalidated
    assert engine.pool.checkedout() == 0
    async with sessions() as session:
        (one,) = await direct.fetch(session, "SELECT 1", alone=True)
    assert one[0] == 1


async def test_an_alone_statement_error_is_translated_as_sqlalchemy_would(
    sessions: Sessions,
) -> None:
    """A failing statement on the pooled connection (a unique violation) raises
    SQLAlchemy's IntegrityError with the statement, and the connection goes back to the
    pool, still good."""
    await _tasks(sessions, ["dup"])
    engine = sessions.kw["bind"]
    insert_again = (
        "INSERT INTO tasks (id, run_id, node_id, status, max_attempts) "
        "SELECT id, run_id, node_id, status, max_attempts FROM tasks WHERE id = $1"
    )
    async with sessions() as session:
        with pytest.raises(sa_exc.IntegrityError) as raised:
            await direct.execute(session, insert_again, "dup", alone=True)
    assert raised.value.statement == insert_again
    assert not raised.value.connection_invalidated
    assert engine.pool.checkedout() == 0
    async with sessions() as session:
        (one,) = await direct.fetch(session, "SELECT 1", alone=True)
    assert one[0] == 1


async def test_statement_observers_see_direct_statements(sessions: Sessions) -> None:
    seen: list[tuple[str, Any]] = []

    def observe(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        seen.append((statement, parameters))

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", observe)
    try:
        async with sessions() as session, session.begin():
            await direct.fetch(session, "SELECT $1::int + 1", 41)
    finally:
        event.remove(engine, "before_cursor_execute", observe)
    assert ("SELECT $1::int + 1", (41,)) in seen


# -- Deferred: independent writes as ONE statement ---------------------------------------


async def _run_id(sessions: Sessions) -> str:
    async with sessions() as session, session.begin():
        run = RunRecord(tenant_id="t", workflow_name="w", spec={}, inputs={}, status="running")
        session.add(run)
        await session.flush()
        return str(run.id)


async def test_deferred_writes_go_as_one_statement_with_their_own_arguments(
    sessions: Sessions,
) -> None:
    """New task rows, attempts naming them (their foreign key checked at the statement's
    end), an update of an older row and an outbox insert returning its ids: one round trip,
    each part bound to its own arrays (the parts' ``$n`` renumbered)."""
    await _tasks(sessions, ["old"])
    run_id = await _run_id(sessions)
    seen: list[str] = []

    def observe(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    new = [
        {"id": i, "run_id": run_id, "node_id": i, "status": "ready", "max_attempts": 2}
        for i in ("n1", "n2")
    ]
    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", observe)
    try:
        async with sessions() as session, session.begin():
            group = direct.Deferred()
            await insert_many(session, TASKS, new, into=group)
            await direct.insert_rows(
                session, ATTEMPTS, [_attempt("n1", 1), _attempt("n2", 1, {"code": "e"})], into=group
            )
            await direct.update_rows(
                session, TASKS, [{"id": "old", "status": "succeeded"}], ["status"], into=group
            )
            assert (len(group), seen) == (3, [])  # nothing sent yet
            ids = await direct.insert_rows(
                session, OUTBOX, _outbox_rows("deferred", 3), returning=("id",), into=group
            )
            assert len(group) == 0
    finally:
        event.remove(engine, "before_cursor_execute", observe)
    assert len(seen) == 1
    assert seen[0].startswith("WITH w0 AS (INSERT INTO tasks")
    assert len(ids) == 3
    async with sessions() as session:
        statuses = dict(
            (
                await session.execute(
                    select(TASKS.c.id, TASKS.c.status).where(TASKS.c.id.in_(["old", "n1", "n2"]))
                )
            ).all()
        )
        errors = dict(
            (
                await session.execute(
                    select(ATTEMPTS.c.task_id, ATTEMPTS.c.error).where(
                        ATTEMPTS.c.task_id.in_(["n1", "n2"])
                    )
                )
            ).all()
        )
        published = await session.scalar(
            text("SELECT count(*) FROM outbox WHERE publisher = 'deferred'")
        )
    assert statuses == {"old": "succeeded", "n1": "ready", "n2": "ready"}
    assert errors == {"n1": None, "n2": {"code": "e"}}
    assert published == 3


async def test_a_failing_part_fails_the_deferred_statement_as_sqlalchemy_would(
    sessions: Sessions,
) -> None:
    """An attempt naming no task: the foreign key, checked at the statement's end, fails
    the group with SQLAlchemy's IntegrityError — a bad write, not an outage."""
    run_id = await _run_id(sessions)
    group = direct.Deferred()
    row = {"id": "lone", "run_id": run_id, "node_id": "x", "status": "ready", "max_attempts": 1}
    async with sessions() as session:
        transaction = await session.begin()
        await insert_many(session, TASKS, [row], into=group)
        await direct.insert_rows(session, ATTEMPTS, [_attempt("nowhere", 1)], into=group)
        with pytest.raises(sa_exc.IntegrityError) as raised:
            await group.send(session)
        await transaction.rollback()
    assert not is_outage(raised.value)
    assert "task_attempts" in str(raised.value)


# -- alone and guarded: a write that needs no transaction of its own ---------------------

RUNS: Table = RunRecord.__table__  # type: ignore[assignment]


async def _pending_runs(sessions: Sessions, n: int) -> list[str]:
    async with sessions() as session, session.begin():
        runs = [
            RunRecord(tenant_id="t", workflow_name="w", spec={}, inputs={}, status="pending")
            for _ in range(n)
        ]
        session.add_all(runs)
        await session.flush()
        return [str(run.id) for run in runs]


_CANCEL = "UPDATE runs SET status = 'cancelled', version = version + 1 WHERE id = $1"
"""A write of a run the way every writer of its state makes one: its version moves on."""


async def _visible(sessions: Sessions, sql: str, *args: Any) -> Any:
    """What another connection sees (committed rows only)."""
    async with sessions() as other, other.begin():
        (row,) = await direct.fetch(other, sql, *args)
    return row[0]


async def _plan_like(
    session: AsyncSession, group: direct.Deferred, run_ids: list[str], prefix: str
) -> list[Any]:
    """What a plan sends: task rows, the runs' change guarded on the version read (0, as
    inserted), outbox rows."""
    tasks = [
        {"id": f"{prefix}{i}", "run_id": run_id, "node_id": "a", "status": "ready"}
        for i, run_id in enumerate(run_ids)
    ]
    await insert_many(session, TASKS, [{**t, "max_attempts": 1} for t in tasks], into=group)
    await direct.update_rows(
        session,
        RUNS,
        [{"id": run_id, "status": "running", "version": 0} for run_id in run_ids],
        ["status"],
        into=group,
        version="version",
        guarded=True,
    )
    return await direct.insert_rows(
        session, OUTBOX, _outbox_rows(prefix, 2), returning=("id",), into=group
    )


async def test_an_alone_group_commits_by_itself_with_no_transaction(sessions: Sessions) -> None:
    """No transaction open: the guarded group is ONE statement, committed on its own (seen
    by another connection before the session ends), its last part's ids returned."""
    run_ids = await _pending_runs(sessions, 2)
    seen: list[str] = []

    def observe(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", observe)
    try:
        async with sessions() as session:
            ids = await _plan_like(session, direct.Deferred(alone=True), run_ids, "alone")
            event.remove(engine, "before_cursor_execute", observe)
            # Committed already: the session has not ended, nor sent COMMIT.
            assert (
                await _visible(sessions, "SELECT count(*) FROM tasks WHERE id LIKE 'alone%'") == 2
            )
    finally:
        if event.contains(engine, "before_cursor_execute", observe):
            event.remove(engine, "before_cursor_execute", observe)
    assert len(seen) == 1
    assert "cadenza_expect_rows" in seen[0]
    assert sorted(i for (i,) in ids) == [i for (i,) in ids]
    assert len(ids) == 2
    statuses = (
        "SELECT count(*) FROM runs WHERE id = ANY($1::VARCHAR[]) "
        "AND status = 'running' AND version = 1"
    )
    assert await _visible(sessions, statuses, run_ids) == 2  # written, version moved on
    assert await _visible(sessions, "SELECT count(*) FROM outbox WHERE publisher = 'alone'") == 2


async def test_a_guard_that_fails_writes_nothing(sessions: Sessions) -> None:
    """One run of two was written after it was read (its version moved on): GuardFailed,
    and neither the task rows, nor the other run's change, nor the outbox rows are
    written."""
    run_ids = await _pending_runs(sessions, 2)
    async with sessions() as other, other.begin():
        await direct.execute(other, _CANCEL, run_ids[1])
    async with sessions() as session:
        with pytest.raises(direct.GuardFailed, match="matched 1 row"):
            await _plan_like(session, direct.Deferred(alone=True), run_ids, "undone")
    assert await _visible(sessions, "SELECT count(*) FROM tasks WHERE id LIKE 'undone%'") == 0
    assert await _visible(sessions, "SELECT count(*) FROM outbox WHERE publisher = 'undone'") == 0
    statuses = "SELECT array_agg(status ORDER BY status) FROM runs WHERE id = ANY($1::VARCHAR[])"
    assert await _visible(sessions, statuses, run_ids) == ["cancelled", "pending"]


async def test_a_guard_sees_a_change_committed_while_it_waited(sessions: Sessions) -> None:
    """Another transaction holds the run's row and cancels it: the guarded statement waits
    for it, then checks the committed version (not its snapshot's) and fails."""
    (run_id,) = await _pending_runs(sessions, 1)
    async with sessions() as holder:
        transaction = await holder.begin()
        await direct.execute(holder, _CANCEL, run_id)

        async def plan() -> None:
            async with sessions() as session:
                await _plan_like(session, direct.Deferred(alone=True), [run_id], "raced")

        planning = asyncio.create_task(plan())
        await asyncio.sleep(0)  # let the statement reach the row lock before the commit
        await assert_eventually(
            lambda: _waiting_on_a_lock(sessions), message="the guarded write never waited"
        )
        await transaction.commit()
        with pytest.raises(direct.GuardFailed):
            await planning
    assert await _visible(sessions, "SELECT count(*) FROM tasks WHERE id LIKE 'raced%'") == 0


async def _waiting_on_a_lock(sessions: Sessions) -> bool:
    waiting = await _visible(
        sessions,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE '%cadenza_expect_rows%'",
    )
    return bool(waiting >= 1)


async def test_an_alone_group_joins_an_open_transaction(sessions: Sessions) -> None:
    """A transaction already open (a step read inside it): the group runs in it, and a
    rollback undoes it."""
    run_ids = await _pending_runs(sessions, 1)
    async with sessions() as session:
        transaction = await session.begin()
        await direct.fetch(session, "SELECT 1")  # begins the transaction
        await _plan_like(session, direct.Deferred(alone=True), run_ids, "joined")
        assert await _visible(sessions, "SELECT count(*) FROM tasks WHERE id LIKE 'joined%'") == 0
        await transaction.rollback()
    assert await _visible(sessions, "SELECT count(*) FROM tasks WHERE id LIKE 'joined%'") == 0
    statuses = "SELECT count(*) FROM runs WHERE id = ANY($1::VARCHAR[]) AND status = 'pending'"
    assert await _visible(sessions, statuses, run_ids) == 1
