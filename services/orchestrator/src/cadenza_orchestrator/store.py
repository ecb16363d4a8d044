"""Persistence of the orchestrator: data functions taking the session as a keyword argument.
They run inside the caller's transaction; the caller commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cadenza_state import (
    ApprovalRecord,
    HoldStatus,
    RunRecord,
    RunStatus,
    TaskAttemptRecord,
    TaskRecord,
    direct,
    insert_many,
)
from cadenza_state.direct import insert_rows, is_postgres
from sqlalchemy import String, and_, any_, bindparam, case, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics
from .outcome import HELD, OPEN, TERMINAL, HoldRequest
from .rows import COLUMNS, RUN_COLUMNS, RUN_SPEC_COLUMNS, RunRow, TaskRow

_OPEN = sorted(OPEN)
_HELD = sorted(HELD)
_DISPATCHED = ["ready", "running"]
_TASKS: Any = TaskRecord.__table__


_RUNS: Any = RunRecord.__table__


def _read_runs_sql() -> str:
    """PostgreSQL's read of the runs of ``$1``, with the spec columns of those of ``$2`` (a
    CASE per column: one statement however the batch's runs are mixed)."""
    columns = [f"runs.{name}" for name in RUN_COLUMNS if name not in RUN_SPEC_COLUMNS]
    columns += [
        f"CASE WHEN runs.id = ANY($2::VARCHAR[]) THEN runs.{name} END AS {name}"
        for name in RUN_SPEC_COLUMNS
    ]
    return f"SELECT {', '.join(columns)} FROM runs WHERE runs.id = ANY($1::VARCHAR[])"


_READ_RUNS_SQL = _read_runs_sql()  # no lock: ``read_runs``
# The lock, in id order: two writers of overlapping sets (a rebalance) cannot deadlock.
_LOCK_RUNS_SQL = {
    skip: f"{_READ_RUNS_SQL} ORDER BY runs.id FOR UPDATE{' SKIP LOCKED' if skip else ''}"
    for skip in (False, True)
}
# SQLite's (no row locks: its BEGIN IMMEDIATE serialises writers). Built once: building a
# statement costs about as much CPU as executing it.
_SELECT_RUNS = select(
    *(_RUNS.c[name] for name in RUN_COLUMNS if name not in RUN_SPEC_COLUMNS),
    *(
        case((_RUNS.c.id.in_(bindparam("spec_ids", expanding=True)), _RUNS.c[name])).label(name)
        for name in RUN_SPEC_COLUMNS
    ),
).where(_RUNS.c.id.in_(bindparam("ids", expanding=True)))


async def lock_runs(
    session: AsyncSession,
    run_ids: Iterable[str],
    *,
    with_spec: Iterable[str] = (),
    skip_locked: bool = False,
) -> dict[str, RunRow]:
    """The batch's run rows by id, locked ``FOR UPDATE`` until the transaction ends, in ONE
    statement: every change to a run is serialised, even when a consumer rebalance briefly
    lets two orchestrators handle the same run. Those of ``with_spec`` come with their
    spec, inputs and replay; the others leave them None (a run whose graph is cached does
    not read them). ``skip_locked``: leave out the runs another transaction holds."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    spec_ids = sorted(set(with_spec) & set(ids))
    if is_postgres(session):
        records = await direct.fetch(session, _LOCK_RUNS_SQL[skip_locked], ids, spec_ids)
    else:
        result = await session.execute(_SELECT_RUNS, {"ids": ids, "spec_ids": spec_ids})
        records = list(result.all())
    return {row.id: row for row in (RunRow(*record) for record in records)}


async def read_runs(
    session: AsyncSession, run_ids: Iterable[str], *, with_spec: Iterable[str] = ()
) -> dict[str, RunRow]:
    """The run rows by id (those of ``with_spec`` with their spec, as ``lock_runs``), NOT
    locked, read on their own (no transaction begun; PostgreSQL only): for a batch that
    writes them back guarded by their version (``update_runs``'s ``unlocked``) instead of
    holding their lock."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    spec_ids = sorted(set(with_spec) & set(ids))
    records = await direct.fetch(session, _READ_RUNS_SQL, ids, spec_ids, alone=True)
    return {row.id: row for row in (RunRow(*record) for record in records)}


async def lock_run(
    session: AsyncSession, run_id: str, *, with_spec: bool = True, skip_locked: bool = False
) -> RunRow | None:
    """One run row, locked (see ``lock_runs``); None when it does not exist, or another
    transaction holds it and ``skip_locked``."""
    runs = await lock_runs(
        session, [run_id], with_spec=[run_id] if with_spec else (), skip_locked=skip_locked
    )
    return runs.get(run_id)


async def update_runs(
    session: AsyncSession,
    runs: Iterable[RunRow],
    *,
    now: datetime,
    into: direct.Deferred | None = None,
    unlocked: bool = False,
) -> None:
    """Write the batch's run rows: what it changed on them (``RunRow.changes``), with
    ``updated_at``, and ``version`` moved on by one — on every run of the batch, changed
    or not: a writer that read a run without its lock must see that its task rows moved
    on. One statement per set of changed columns (a batch's runs mostly change the same
    ones, or none). ``into`` (PostgreSQL): they join that group.

    ``unlocked`` (with ``into``, PostgreSQL): the batch read its runs without their lock.
    Each run is written only where its version is still the one read; the group fails
    with ``direct.GuardFailed``, writing nothing, unless every run was (a command, the
    sweeper or another orchestrator wrote it meanwhile)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    written: list[RunRow] = []
    changed = 0
    # In id order, as the locked way locks them: the usual plan (a nested loop over the
    # arrays) updates them in that order, so two writers of overlapping sets (a rebalance)
    # wait for each other; a deadlock PostgreSQL breaks fails the batch, which is retried.
    for run in sorted(runs, key=lambda r: r.id):
        changes = run.changes()
        columns = (*sorted(changes), "updated_at")
        row = {"id": run.id, **changes, "updated_at": now, "version": run.version}
        by_columns.setdefault(columns, []).append(row)
        written.append(run)
        changed += bool(changes)
    for columns, rows in by_columns.items():
        if is_postgres(session):
            await direct.update_rows(
                session, _RUNS, rows, columns, into=into, version="version", guarded=unlocked
            )
        else:
            params = [{**v, "run_id": v["id"]} for v in rows]
            await session.execute(_update_runs_statement(columns), params)
    for run in written:
        run.mark_written()
        run.version += 1
    metrics.RUN_ROWS_WRITTEN.inc(changed)


_RUN_UPDATES: dict[tuple[str, ...], Any] = {}


def _update_runs_statement(columns: tuple[str, ...]) -> Any:
    """SQLite's executemany ``UPDATE runs SET <columns>, version = version + 1 WHERE id =
    :run_id``, built once."""
    stmt = _RUN_UPDATES.get(columns)
    if stmt is None:
        stmt = _RUN_UPDATES[columns] = (
            update(_RUNS)
            .where(_RUNS.c.id == bindparam("run_id"))
            .values({**{name: bindparam(name) for name in columns}, "version": _RUNS.c.version + 1})
        )
    return stmt


def _in(column: Any, name: str, postgres: bool) -> Any:
    """``column IN :name`` with ONE SQL text whatever the list's length: ``= ANY(:name)``
    over an array on PostgreSQL (asyncpg prepares each distinct text; an expanding IN made
    one per list length, each a prepare round trip and an eviction from the connection's
    statement cache), an expanding IN on SQLite."""
    if postgres:
        return column == any_(bindparam(name, type_=postgresql.ARRAY(String)))
    return column.in_(bindparam(name, expanding=True))


def _per_dialect(build: Any) -> dict[str, Any]:
    return {"postgresql": build(True), "sqlite": build(False)}


def _dialect(session: AsyncSession) -> str:
    return "postgresql" if is_postgres(session) else "sqlite"


def _select_rows() -> Any:
    """``SELECT`` of every ``tasks`` column, in ``TaskRow``'s field order."""
    return select(*(_TASKS.c[name] for name in COLUMNS))


async def _rows(
    session: AsyncSession, stmt: Any, params: Mapping[str, Any] | None = None
) -> list[TaskRow]:
    rows = [TaskRow(*row) for row in (await session.execute(stmt, params)).all()]
    metrics.TASK_ROWS_LOADED.inc(len(rows))
    return rows


_LOAD_TASKS = _per_dialect(
    lambda postgres: _select_rows().where(
        _TASKS.c.run_id == bindparam("run_id"), _in(_TASKS.c.id, "ids", postgres)
    )
)
_LOAD_NODES = _per_dialect(
    lambda postgres: _select_rows().where(
        _TASKS.c.run_id == bindparam("run_id"),
        _in(_TASKS.c.node_id, "ids", postgres),
        _TASKS.c.item_index.is_(None),
    )
)
_LOAD_INSTANCES = (
    _select_rows()
    .where(
        _TASKS.c.run_id == bindparam("run_id"),
        _TASKS.c.node_id == bindparam("node_id"),
        _TASKS.c.item_index.is_not(None),
    )
    .order_by(_TASKS.c.item_index)
)


async def load_tasks(
    session: AsyncSession, run_id: str, task_ids: Iterable[str]
) -> dict[str, TaskRow]:
    """Task rows of one run by id, in one query. No row lock: only the orchestrator writes
    task rows, and the run row's lock already serialises every writer of a run."""
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    rows = await _rows(session, _LOAD_TASKS[_dialect(session)], {"run_id": run_id, "ids": ids})
    return {row.id: row for row in rows}


_LOAD_BY_ID = _select_rows().where(_in(_TASKS.c.id, "ids", False))  # SQLite's


async def load_tasks_by_id(session: AsyncSession, task_ids: Iterable[str]) -> dict[str, TaskRow]:
    """Task rows of any runs by id, in one query (the results of a batch's runs); the
    caller checks each row's ``run_id``."""
    ids = sorted(set(task_ids))
    if not ids:
        return {}
    if is_postgres(session):  # every batch's read: straight on asyncpg (cadenza_state.direct)
        records = await direct.fetch(session, _SELECT_BY_ID, ids)
        rows = [TaskRow(*record) for record in records]
        metrics.TASK_ROWS_LOADED.inc(len(rows))
    else:
        rows = await _rows(session, _LOAD_BY_ID, {"ids": ids})
    return {row.id: row for row in rows}


_TASK_COLUMNS_SQL = ", ".join(f"tasks.{name}" for name in COLUMNS)
_SELECT_BY_ID = f"SELECT {_TASK_COLUMNS_SQL} FROM tasks WHERE tasks.id = ANY($1::VARCHAR[])"
_SELECT_BY_ID_WITH_ATTEMPTS = (  # and the attempts recorded for each row, as an array
    f"SELECT {_TASK_COLUMNS_SQL}, "
    "ARRAY(SELECT a.attempt FROM task_attempts a WHERE a.task_id = tasks.id) FROM tasks "
    "WHERE tasks.id = ANY($1::VARCHAR[])"
)


async def read_tasks_with_attempts(
    session: AsyncSession, task_ids: Iterable[str]
) -> tuple[dict[str, TaskRow], set[tuple[str, int]]]:
    """``load_tasks_by_id`` with the ``(task_id, attempt)`` pairs recorded for them, in ONE
    read on its own (no transaction begun; PostgreSQL only): for a batch applied without a
    lock, which inserts its new attempts with its other writes."""
    ids = sorted(set(task_ids))
    if not ids:
        return {}, set()
    records = await direct.fetch(session, _SELECT_BY_ID_WITH_ATTEMPTS, ids, alone=True)
    rows: dict[str, TaskRow] = {}
    recorded: set[tuple[str, int]] = set()
    width = len(COLUMNS)
    for record in records:
        row = TaskRow(*record[:width])
        rows[row.id] = row
        recorded.update((row.id, attempt) for attempt in record[width])
    metrics.TASK_ROWS_LOADED.inc(len(rows))
    return rows, recorded


_SELECT_RUNS_WHOLE = (  # every row of the runs, each with its recorded attempts
    f"SELECT {_TASK_COLUMNS_SQL}, "
    "ARRAY(SELECT a.attempt FROM task_attempts a WHERE a.task_id = tasks.id) FROM tasks "
    "WHERE tasks.run_id = ANY($1::VARCHAR[])"
)


async def read_whole_runs(
    session: AsyncSession, run_ids: Iterable[str]
) -> dict[str, tuple[dict[str, TaskRow], set[tuple[str, int]]]]:
    """EVERY task row of these runs by id, with the ``(task_id, attempt)`` pairs recorded
    for them, per run, in ONE read on its own (PostgreSQL only): the runs a batch rebuilds
    in memory (``RunMemory.fill``). Read after the runs' rows: a writer in between has
    moved a run's version past the one the batch's guard expects."""
    ids = sorted(set(run_ids))
    runs: dict[str, tuple[dict[str, TaskRow], set[tuple[str, int]]]] = {
        run_id: ({}, set()) for run_id in ids
    }
    if not ids:
        return runs
    records = await direct.fetch(session, _SELECT_RUNS_WHOLE, ids, alone=True)
    width = len(COLUMNS)
    for record in records:
        row = TaskRow(*record[:width])
        rows, recorded = runs[row.run_id]
        rows[row.id] = row
        recorded.update((row.id, attempt) for attempt in record[width])
    metrics.TASK_ROWS_LOADED.inc(len(records))
    return runs


async def load_nodes(session: AsyncSession, run_id: str, node_ids: Iterable[str]) -> list[TaskRow]:
    """The node rows (``item_index`` NULL) of these spec tasks."""
    ids = sorted(set(node_ids))
    if not ids:
        return []
    return await _rows(session, _LOAD_NODES[_dialect(session)], {"run_id": run_id, "ids": ids})


async def load_instances(session: AsyncSession, run_id: str, node_id: str) -> list[TaskRow]:
    """A fan-out task's instance rows, in index order."""
    return await _rows(session, _LOAD_INSTANCES, {"run_id": run_id, "node_id": node_id})


async def insert_attempt(
    session: AsyncSession,
    *,
    task_id: str,
    attempt: int,
    status: str,
    worker_id: str | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Record an attempt's result once; False when ``(task_id, attempt)`` is already there
    (a duplicate delivery). The primary key is the exactly-once proof."""
    values = {
        "task_id": task_id,
        "attempt": attempt,
        "status": status,
        "worker_id": worker_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "error": error,
    }
    dialect = postgresql if is_postgres(session) else sqlite
    stmt = (
        dialect.insert(TaskAttemptRecord)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["task_id", "attempt"])
    )
    result = await session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def insert_tasks(
    session: AsyncSession, rows: Sequence[TaskRow], *, into: direct.Deferred | None = None
) -> None:
    """Insert new task rows (every column given) in ONE statement (``into``: a few rows'
    insert joins that group)."""
    if rows:
        await insert_many(session, _TASKS, [row.values() for row in rows], into=into)
        metrics.TASK_ROWS_WRITTEN.labels("insert").inc(len(rows))


_UPDATES: dict[tuple[str, ...], Any] = {}


def _update_statement(columns: tuple[str, ...]) -> Any:
    """``UPDATE tasks SET <columns> WHERE id = :row_id``, built once per column set (and
    compiled once by SQLAlchemy's cache)."""
    stmt = _UPDATES.get(columns)
    if stmt is None:
        stmt = (
            update(_TASKS)
            .where(_TASKS.c.id == bindparam("row_id"))
            .values({name: bindparam(name) for name in columns})
        )
        _UPDATES[columns] = stmt
    return stmt


async def update_tasks(
    session: AsyncSession,
    changed: Mapping[str, set[str]],
    rows: Mapping[str, TaskRow],
    *,
    into: direct.Deferred | None = None,
) -> None:
    """Write the columns a transition set on these rows in ONE statement: the union of the
    columns set on any of them, each row's own values (the transition holds whole rows, so
    a column it did not set is written back unchanged).

    On PostgreSQL, one ``UPDATE … FROM unnest(<one array per column>)``: the server runs
    one statement, where an executemany ran (and SQLAlchemy bound) one per row — in a
    fan-out's batch of 200 results, that was most of the update's cost on both sides. It
    runs straight on asyncpg (``cadenza_state.direct``). Elsewhere (``cadenza dev``'s
    SQLite), an executemany. ``into`` (PostgreSQL): the update joins that group."""
    if not changed:
        return
    names = tuple(sorted(set().union(*changed.values())))
    if is_postgres(session):
        ordered = [rows[task_id] for task_id in changed]
        await direct.update_rows(session, _TASKS, ordered, names, get=getattr, into=into)
    else:
        await session.execute(
            _update_statement(names),
            [
                {"row_id": task_id, **{name: getattr(rows[task_id], name) for name in names}}
                for task_id in changed
            ],
        )
    metrics.TASK_ROWS_WRITTEN.labels("update").inc(len(changed))


async def insert_attempts(
    session: AsyncSession,
    values: Sequence[dict[str, Any]],
    *,
    into: direct.Deferred | None = None,
) -> set[tuple[str, int]]:
    """Record many attempts' results in ONE statement; returns the ``(task_id, attempt)``
    pairs inserted now — the others were recorded before (duplicate deliveries). ``into``
    (PostgreSQL): the insert joins that group and nothing is returned (for attempts whose
    duplicates need no answer: the ones the orchestrator writes itself)."""
    if not values:
        return set()
    rows = [{**_ATTEMPT_DEFAULTS, **v} for v in values]
    if is_postgres(session):  # every batch's write: one array per column, straight on asyncpg
        inserted = await insert_rows(
            session,
            _ATTEMPTS,
            rows,
            returning=() if into is not None else ("task_id", "attempt"),
            skip_conflicts_on=("task_id", "attempt"),
            into=into,
        )
        return {(task_id, attempt) for task_id, attempt in inserted}
    # SQLite: an executemany of one statement compiled once (SQLAlchemy's insertmanyvalues).
    result = await session.execute(_INSERT_ATTEMPTS, rows)
    return {(task_id, attempt) for task_id, attempt in result.all()}


_ATTEMPTS: Any = TaskAttemptRecord.__table__
_INSERT_ATTEMPTS = (  # SQLite's; PostgreSQL's is an unnest insert (insert_rows)
    sqlite.insert(_ATTEMPTS)
    .on_conflict_do_nothing(index_elements=["task_id", "attempt"])
    .returning(_ATTEMPTS.c.task_id, _ATTEMPTS.c.attempt)
)

# Every column an attempt row may set: executemany needs the same keys in every row.
_ATTEMPT_DEFAULTS: dict[str, Any] = {
    "task_id": None,
    "attempt": None,
    "status": None,
    "worker_id": None,
    "started_at": None,
    "finished_at": None,
    "error": None,
}


async def cancel_open_tasks(
    session: AsyncSession, run_id: str, *, now: datetime, node_id: str | None = None
) -> list[str]:
    """Cancel a run's open tasks (or one fan-out task's open instances); returns their ids
    (the caller brings the rows it holds in memory in step)."""
    criteria = [_TASKS.c.run_id == run_id, _TASKS.c.status.in_([*_OPEN, *_HELD])]
    if node_id is not None:
        criteria += [_TASKS.c.node_id == node_id, _TASKS.c.item_index.is_not(None)]
    stmt = (
        update(_TASKS)
        .where(*criteria)
        .values(status="cancelled", finished_at=now, updated_at=now)
        .returning(_TASKS.c.id)
    )
    ids = list((await session.scalars(stmt)).all())
    metrics.TASK_ROWS_WRITTEN.labels("update").inc(len(ids))
    return ids


async def has_open_tasks(
    session: AsyncSession, run_id: str, *, besides: Iterable[str] = ()
) -> bool:
    """Whether any task of the run still has work ahead (served by a partial index), or
    waits for a person (checked only when nothing else is open: the run's last moments).
    ``besides``: rows the caller holds changed and has not written yet (it judges those
    itself), so it need not write them first."""
    if is_postgres(session):  # every small run's end: straight on asyncpg
        (row,) = await direct.fetch(session, _HAS_OPEN_SQL, run_id, sorted(set(besides)))
        return bool(row[0])
    params = {"run_id": run_id, "besides": sorted(set(besides))}
    return bool(await session.scalar(_HAS_OPEN_TASKS, params))


def _sql_list(values: Iterable[str]) -> str:
    """Constant statuses as SQL literals: the planner matches them against the partial
    indexes' predicates (``ix_tasks_run_id_open``), which bound values may not prove."""
    out = []
    for value in values:
        assert value.replace("_", "").isalpha(), value  # our own status names, nothing else
        out.append(f"'{value}'")
    return ", ".join(out)


_HAS_OPEN_SQL = "SELECT " + " OR ".join(
    f"EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = $1 AND tasks.status IN "
    f"({_sql_list(statuses)}) AND tasks.id <> ALL($2::VARCHAR[]))"
    for statuses in (_OPEN, _HELD)
)
_COUNT_TASKS_OF_SQL = (
    "SELECT tasks.run_id, count(*), count(*) FILTER (WHERE tasks.status IN "
    f"({_sql_list(sorted(TERMINAL))})) FROM tasks WHERE tasks.run_id = ANY($1::VARCHAR[]) "
    "GROUP BY tasks.run_id"
)


_HAS_OPEN_TASKS = select(  # SQLite's; PostgreSQL's is _HAS_OPEN_SQL, straight on asyncpg
    or_(
        *(
            exists().where(
                _TASKS.c.run_id == bindparam("run_id"),
                _TASKS.c.status.in_(statuses),
                _TASKS.c.id.not_in(bindparam("besides", expanding=True)),
            )
            for statuses in (_OPEN, _HELD)
        )
    )
)


async def insert_hold(
    session: AsyncSession, held: HoldRequest, *, tenant_id: str, run_id: str, now: datetime
) -> None:
    """Record a held call in the approvals inbox; a redelivered result inserts nothing."""
    hold = held.hold
    values = {
        "id": held.approval_id,
        "tenant_id": tenant_id,
        "run_id": run_id,
        "task_id": held.task_id,
        "node_id": held.node_id,
        "attempt": held.attempt,
        "call_index": hold.call_index,
        "kind": hold.kind,
        "status": HoldStatus.PENDING.value,
        "tool": hold.tool,
        "arguments": hold.arguments,
        "reason": hold.reason or None,
        "rule": hold.rule or None,
        "on_timeout": hold.on_timeout,
        "expires_at": now + timedelta(seconds=hold.timeout_s) if hold.timeout_s else None,
        "created_at": now,
    }
    table: Any = ApprovalRecord.__table__
    if is_postgres(session):
        stmt: Any = postgresql.insert(table).values(values).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).values(values).on_conflict_do_nothing()
    await session.execute(stmt)


async def cancel_pending_holds(session: AsyncSession, run_id: str, *, now: datetime) -> None:
    """The run ended while calls waited for a person: nobody needs to answer them now."""
    await session.execute(
        update(ApprovalRecord)
        .where(ApprovalRecord.run_id == run_id, ApprovalRecord.status == HoldStatus.PENDING)
        .values(status=HoldStatus.CANCELLED, decided_at=now, decided_by="system:run_finished")
    )


async def expired_holds(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[ApprovalRecord]:
    """Pending approvals past their deadline (served by a partial index)."""
    stmt = (
        select(ApprovalRecord)
        .where(ApprovalRecord.status == HoldStatus.PENDING, ApprovalRecord.expires_at < now)
        .order_by(ApprovalRecord.expires_at)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def count_tasks(session: AsyncSession, run_id: str) -> tuple[int, int]:
    """``(total, finished)`` task rows of a run (for the hot status; once per run)."""
    total, done = (await session.execute(_COUNT_TASKS, {"run_id": run_id})).one()
    return int(total), int(done or 0)


async def count_tasks_of(
    session: AsyncSession, run_ids: Iterable[str], *, alone: bool = False
) -> dict[str, tuple[int, int]]:
    """``count_tasks`` of several runs in one grouped query (the runs a batch finished).
    ``alone`` (PostgreSQL): read on its own when no transaction is open."""
    ids = sorted(set(run_ids))
    if not ids:
        return {}
    if is_postgres(session):  # every batch that finished a run: straight on asyncpg
        rows: Any = await direct.fetch(session, _COUNT_TASKS_OF_SQL, ids, alone=alone)
    else:
        rows = (await session.execute(_COUNT_TASKS_OF, {"ids": ids})).all()
    return {run_id: (int(total), int(done or 0)) for run_id, total, done in rows}


_COUNT_TASKS_OF = (  # SQLite's; PostgreSQL's is _COUNT_TASKS_OF_SQL, straight on asyncpg
    select(
        _TASKS.c.run_id,
        func.count(),
        func.count().filter(_TASKS.c.status.in_(sorted(TERMINAL))),
    )
    .where(_in(_TASKS.c.run_id, "ids", False))
    .group_by(_TASKS.c.run_id)
)

_COUNT_TASKS = select(
    func.count(), func.count().filter(_TASKS.c.status.in_(sorted(TERMINAL)))
).where(_TASKS.c.run_id == bindparam("run_id"))


@dataclass(frozen=True)
class DispatchedTask:
    """A dispatched task as the sweeper sees it."""

    task_id: str
    run_id: str
    status: str
    attempt: int
    ready_at: datetime | None


def keyset_after(at: Any, key: Any, after: tuple[datetime, str] | None) -> list[Any]:
    """The condition of a page that goes on past ``after`` — the ``(at, key)`` of the last
    row of the previous page — in ``ORDER BY at, key``; none for the first page."""
    if after is None:
        return []
    last_at, last_key = after
    return [or_(at > last_at, and_(at == last_at, key > last_key))]


async def dispatched_tasks(
    session: AsyncSession,
    *,
    limit: int,
    before: datetime | None = None,
    after: tuple[datetime, str] | None = None,
) -> list[DispatchedTask]:
    """Tasks dispatched to workers (``ready``/``running``, attempt ≥ 1) of running runs,
    oldest dispatch first (then by id); only those dispatched before ``before``, and past
    ``after`` — the ``(ready_at, id)`` of the last task a previous page ended on — when
    given."""
    stmt = (
        select(
            TaskRecord.id,
            TaskRecord.run_id,
            TaskRecord.status,
            TaskRecord.attempt,
            TaskRecord.ready_at,
        )
        .join(RunRecord, RunRecord.id == TaskRecord.run_id)
        .where(
            TaskRecord.status.in_(_DISPATCHED),
            TaskRecord.attempt >= 1,
            TaskRecord.ready_at.is_not(None),  # fan-out rows are never dispatched themselves
            *([TaskRecord.ready_at <= before] if before is not None else []),
            *keyset_after(TaskRecord.ready_at, TaskRecord.id, after),
            RunRecord.status == RunStatus.RUNNING.value,
        )
        .order_by(TaskRecord.ready_at, TaskRecord.id)
        .limit(limit)
    )
    return [DispatchedTask(*row) for row in (await session.execute(stmt)).all()]


async def lock_tasks(session: AsyncSession, task_ids: Sequence[str]) -> list[TaskRow]:
    """Lock task rows, skipping rows another orchestrator holds (``SKIP LOCKED``)."""
    stmt = _select_rows().where(_TASKS.c.id.in_(list(task_ids))).with_for_update(skip_locked=True)
    return await _rows(session, stmt)


async def count_pending_holds(session: AsyncSession) -> dict[str, int]:
    """Pending held calls by kind (for the inbox gauge)."""
    stmt = (
        select(ApprovalRecord.kind, func.count())
        .where(ApprovalRecord.status == HoldStatus.PENDING)
        .group_by(ApprovalRecord.kind)
    )
    return {str(kind): int(n) for kind, n in (await session.execute(stmt)).all()}


async def load_paused(session: AsyncSession, run_id: str) -> list[TaskRow]:
    """The tasks a budget held (``paused``), for a resume (the run row's lock serialises
    every writer of the run)."""
    stmt = (
        _select_rows()
        .where(_TASKS.c.run_id == run_id, _TASKS.c.status == "paused")
        .order_by(_TASKS.c.id)
    )
    return await _rows(session, stmt)
