"""Statements run straight on the session's asyncpg connection: the few the orchestrator
runs in every batch, and many rows in ONE statement with one array per column (``unnest``).

Why not ``session.execute``: SQLAlchemy's execution of one statement (the greenlet hop, the
execution context, parameter and result processing) costs ~130 µs of CPU on this machine,
asyncpg's own ~45 µs; a chain's step runs four such statements in its batch. The SQL is
built once per table and column set; values go through the bind processors SQLAlchemy
would apply (the engine's JSON serializer, UTC timestamps), so what is stored is what a
Core insert stores (tests/state/test_direct.py reads both back). JSON travels as text and
is cast per element, so a document is stored as written.

The statements run on the same connection, inside the session's transaction: a caller
mixes them freely with ``session.execute``. Observers of SQLAlchemy's
``before_cursor_execute`` event see them too. A statement sent ``alone`` runs on its own
when no transaction is open (the orchestrator's unlocked batches: one guarded statement,
no BEGIN or COMMIT). If the session has begun nothing at all, it runs on a pooled
connection checked out for it alone (``_on_pooled``), and the session stays untouched.
PostgreSQL only; callers keep their portable statement for ``cadenza dev``'s SQLite
(``is_postgres``).

To behave as SQLAlchemy's own execution does, ``_on_driver`` uses three private members of
its asyncpg adapter (``_transaction``, ``_start_transaction``, ``_handle_exception``: begin the
transaction like the adapter, translate an error like it). SQLAlchemy is pinned in
``uv.lock``; tests/state/test_direct.py fails if an upgrade changes either behaviour (a
first statement outside the transaction, a dropped connection not seen as an outage).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.util import greenlet_spawn


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


GUARD_SQLSTATE = "CZ409"
"""The SQLSTATE ``cadenza_expect_rows`` raises (migration ``0014_expect_rows``)."""


class GuardFailed(Exception):
    """A guarded part of a ``Deferred`` group matched another number of rows than it
    expected: PostgreSQL undid the whole statement, nothing of the group was written."""


async def fetch(session: AsyncSession, sql: str, *args: Any, alone: bool = False) -> list[Any]:
    """The rows (asyncpg records) of ``sql`` with positional ``$n`` arguments. ``alone``:
    when the session has no transaction open, the statement runs on its own (PostgreSQL
    makes one statement atomic by itself) instead of beginning one — no BEGIN and no
    COMMIT round trip; in an open transaction it runs there, as always."""
    return list(await _run(session, sql, args, returns_rows=True, alone=alone))


async def execute(session: AsyncSession, sql: str, *args: Any, alone: bool = False) -> None:
    """Run ``sql`` (a statement that returns no rows) with positional ``$n`` arguments
    (``alone``: see ``fetch``)."""
    await _run(session, sql, args, returns_rows=False, alone=alone)


async def _run(
    session: AsyncSession,
    sql: str,
    args: tuple[Any, ...],
    *,
    returns_rows: bool,
    alone: bool = False,
) -> Any:
    async def run(driver: Any) -> Any:
        if returns_rows:
            return await driver.fetch(sql, *args)
        return await driver.execute(sql, *args)

    return await _on_driver(session, run, sql, args, alone=alone)


async def copy_records(
    session: AsyncSession, table: str, records: Sequence[tuple[Any, ...]], columns: Sequence[str]
) -> None:
    """asyncpg's binary ``COPY`` of ``records`` into ``table``, in the session's
    transaction (begun first if none is open, as any statement here)."""

    async def copy(driver: Any) -> None:
        await driver.copy_records_to_table(table, records=records, columns=list(columns))

    await _on_driver(session, copy, f"COPY {table}", (), alone=False)


async def _on_driver(
    session: AsyncSession,
    call: Callable[[Any], Awaitable[Any]],
    sql: str,
    args: tuple[Any, ...],
    *,
    alone: bool,
) -> Any:
    """``call`` with the session's asyncpg connection, in its transaction (``alone``: on
    its own when none is open), its errors translated as SQLAlchemy's."""
    if alone and not session.in_transaction() and isinstance(session.bind, AsyncEngine):
        return await _on_pooled(session.bind, call, sql, args)
    connection = await session.connection()
    sync = connection.sync_connection
    assert sync is not None
    if sync.dispatch.before_cursor_execute:  # statement observers (tests) see these too
        sync.dispatch.before_cursor_execute(sync, None, sql, args, None, False)
    pooled = await connection.get_raw_connection()
    adapted: Any = pooled.dbapi_connection  # SQLAlchemy's asyncpg adapter
    try:
        if adapted._transaction is None and not alone:
            # The adapter sends BEGIN with the first statement IT runs; a statement sent
            # around it must begin the transaction the same way, or it would run (and
            # commit) on its own, outside the session's transaction.
            await adapted._start_transaction()
        return await call(pooled.driver_connection)
    except Exception as error:
        dialect = connection.dialect
        raise await _translated(
            dialect, adapted, sql, args, error, connection.invalidate
        ) from error


async def _on_pooled(
    engine: AsyncEngine, call: Callable[[Any], Awaitable[Any]], sql: str, args: tuple[Any, ...]
) -> Any:
    """``call`` on a connection of the engine's pool checked out for it alone, for a
    statement that runs on its own while its session has begun nothing. The session is
    left untouched: nothing of it is begun, committed or closed for the statement. Its
    autobegin, checkout, commit and close cost ~125 µs of CPU more than this checkout and
    return (bench/orchestrator_step.py's ``session_overhead_cpu_us`` measures the whole
    session path), in every orchestrator batch sent without a lock.

    The connection is the pool's own, so it is set up, checked for liveness and replaced
    as every other one. Errors are translated as SQLAlchemy's execution translates them.
    Statement observers are called on the engine, with no connection."""
    sync = engine.sync_engine
    dialect = sync.dialect
    if sync.dispatch.before_cursor_execute:  # statement observers (tests) see these too
        sync.dispatch.before_cursor_execute(None, None, sql, args, None, False)
    try:
        pooled = await engine.raw_connection()
    except dialect.loaded_dbapi.Error as error:  # as Connection's checkout raises it
        gone = bool(dialect.is_disconnect(error, None, None))
        raise _wrapped(dialect, sql, args, error, gone) from error
    try:
        return await call(pooled.driver_connection)
    except Exception as error:  # a lost connection leaves the pool: nothing is given back
        invalidate = partial(greenlet_spawn, pooled.invalidate)
        raise await _translated(
            dialect, pooled.dbapi_connection, sql, args, error, invalidate
        ) from error
    finally:  # also when cancelled mid-statement: asyncpg cancels it on the server
        if pooled.dbapi_connection is not None:  # not invalidated: back to the pool
            await greenlet_spawn(pooled.close)


def _wrapped(
    dialect: Dialect, sql: str | None, args: Any, dbapi_error: Exception, gone: bool
) -> Exception:
    return sa_exc.DBAPIError.instance(
        sql,
        args,
        dbapi_error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=gone,
        dialect=dialect,
    )


async def _translated(
    dialect: Dialect,
    adapted: Any,
    sql: str,
    args: tuple[Any, ...],
    error: Exception,
    invalidate: Callable[[Exception], Awaitable[Any]],
) -> Exception:
    """``error`` as SQLAlchemy's own execution raises it (so callers and ``is_outage`` see
    the same types): asyncpg's error translated to the DBAPI's by the adapter, wrapped in a
    ``sqlalchemy.exc.DBAPIError`` subclass, and the connection invalidated when it is
    gone (the pool then replaces it)."""
    try:
        adapted._handle_exception(error)  # raises the DBAPI-level error
    except dialect.loaded_dbapi.Error as dbapi_error:
        gone = bool(dialect.is_disconnect(dbapi_error, adapted, None))
        if gone:
            await invalidate(dbapi_error)
        return _wrapped(dialect, sql, args, dbapi_error, gone)
    except Exception as other:  # not a database error: as it is
        return other
    return error


class Deferred:
    """Writes that read nothing another of them writes, sent together as ONE statement:
    each but the last a data-modifying ``WITH`` clause of the last. A batch's task update,
    attempt rows, run update and outbox insert then cost one round trip, not four (each a
    wake-up of both processes, and ~50 µs of asyncpg and of the server's statement
    overhead).

    PostgreSQL runs every part on the same snapshot: no part sees another's rows, so only
    writes that do not depend on each other may be grouped (an insert and its foreign keys
    may: the key is checked at the statement's end). A caller ``add``s the parts and
    ``send``s them, with the last one that returns rows, if any.

    A part may be guarded (``expect_rows``): a write whose own ``WHERE`` re-checks what its
    caller read without a lock, and that returns a row for each row it wrote. If it does
    not write exactly the rows expected (another writer got there first), the statement
    fails with ``GuardFailed`` and PostgreSQL undoes all of it. ``alone``: the group is
    sent as a statement of its own when no transaction is open (``fetch``)."""

    def __init__(self, *, alone: bool = False) -> None:
        self._parts: list[tuple[str, tuple[Any, ...]]] = []
        self._expected: list[tuple[int, int]] = []
        """The guarded parts: (index in ``_parts``, the rows each must return)."""
        self.alone = alone

    def __len__(self) -> int:
        return len(self._parts)

    def add(self, sql: str, args: Sequence[Any], *, expect_rows: int | None = None) -> None:
        """Add a part; ``expect_rows``: it must return exactly that many rows (it has a
        ``RETURNING`` clause), or the whole statement fails with ``GuardFailed``."""
        if expect_rows is not None:
            self._expected.append((len(self._parts), expect_rows))
        self._parts.append((sql, tuple(args)))

    async def send(
        self,
        session: AsyncSession,
        last: tuple[str, Sequence[Any]] | None = None,
        *,
        returning: Sequence[str] = (),
    ) -> list[Any]:
        """Run the parts added (and ``last``) as one statement; the rows ``last`` returns
        (``returning`` names its columns: a guarded group returns one, as 1-tuples)."""
        parts, self._parts = self._parts, []
        expected, self._expected = self._expected, []
        if last is not None:
            parts.append((last[0], tuple(last[1])))
        if not parts:
            return []
        texts = tuple(text for text, _ in parts)
        args = tuple(arg for _, part_args in parts for arg in part_args)
        if expected:
            return await self._send_guarded(session, texts, args, expected, last, returning)
        sql = _combined(texts)
        if last is not None:
            return await fetch(session, sql, *args, alone=self.alone)
        await execute(session, sql, *args, alone=self.alone)
        return []

    async def _send_guarded(
        self,
        session: AsyncSession,
        texts: tuple[str, ...],
        args: tuple[Any, ...],
        expected: list[tuple[int, int]],
        last: tuple[str, Sequence[Any]] | None,
        returning: Sequence[str],
    ) -> list[Any]:
        column: str | None = None
        if last is not None:
            if len(returning) != 1:
                raise ValueError("a guarded group's last part returns exactly one column")
            column = returning[0]
        sql = _guarded(texts, tuple(index for index, _ in expected), column)
        try:
            (row,) = await fetch(
                session, sql, *args, *(rows for _, rows in expected), alone=self.alone
            )
        except sa_exc.DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == GUARD_SQLSTATE:
                raise GuardFailed(str(error.orig)) from error
            raise
        return [(value,) for value in row[-1]] if column is not None else []


def _shifted(offset: int, match: re.Match[str]) -> str:
    return f"${int(match.group(1)) + offset}"


_PLACEHOLDER = re.compile(r"\$(\d+)")
_COMBINED: dict[tuple[str, ...], str] = {}


def _combined(parts: tuple[str, ...]) -> str:
    """``WITH w0 AS (<part 0>), … <last part>``, each part's ``$n`` moved past the
    arguments of the parts before it (the statements here hold no ``$`` but those)."""
    sql = _COMBINED.get(parts)
    if sql is None:
        *clauses, main = _renumbered(parts)[0]
        sql = _COMBINED[parts] = f"{_with(clauses)} {main}" if clauses else main
    return sql


def _with(clauses: Sequence[str]) -> str:
    """``WITH w0 AS (<clause 0>), w1 AS (…)``: clause i is named ``w<i>``."""
    return "WITH " + ", ".join(f"w{i} AS ({clause})" for i, clause in enumerate(clauses))


def _renumbered(parts: tuple[str, ...]) -> tuple[list[str], int]:
    """Each part's ``$n`` moved past the arguments of the parts before it (the statements
    here hold no ``$`` but those), and the number of arguments of them all."""
    offset, renumbered = 0, []
    for part in parts:
        count = max((int(n) for n in _PLACEHOLDER.findall(part)), default=0)
        renumbered.append(_PLACEHOLDER.sub(partial(_shifted, offset), part))
        offset += count
    return renumbered, offset


_GUARDED: dict[tuple[tuple[str, ...], tuple[int, ...], str | None], str] = {}


def _guarded(parts: tuple[str, ...], guarded: tuple[int, ...], column: str | None) -> str:
    """``WITH w0 AS (<part 0>), …, wN AS (<part N>) SELECT cadenza_expect_rows((SELECT
    count(*) FROM w<i>), $<k>), …[, ARRAY(SELECT <column> FROM wN)]``: every part is a
    clause, and the ONE row selected checks each guarded part's count (the expected
    counts are the last arguments). A failed check raises, so PostgreSQL undoes every
    part: data-modifying clauses run to completion whether read or not, but only
    together with the statement."""
    key = (parts, guarded, column)
    sql = _GUARDED.get(key)
    if sql is None:
        renumbered, offset = _renumbered(parts)
        checks = [
            f"cadenza_expect_rows((SELECT count(*) FROM w{index}), ${offset + k + 1}::BIGINT)"
            for k, index in enumerate(guarded)
        ]
        if column is not None:
            checks.append(f"ARRAY(SELECT {column} FROM w{len(parts) - 1})")
        sql = _GUARDED[key] = f"{_with(renumbered)} SELECT {', '.join(checks)}"
    return sql


class Unnest:
    """``unnest($1::<type>[], …) AS v(<columns>)`` for some columns of one table, and the
    arrays to bind to it. The SQL depends on the table and columns only (every PostgreSQL
    dialect names the types alike); the values are processed by the session's dialect."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        self.table = table
        self.columns = tuple(columns)
        self._json = [isinstance(table.c[name].type, JSON) for name in self.columns]
        self._types = [
            "TEXT" if is_json else table.c[name].type.compile(dialect=dialect)
            for name, is_json in zip(self.columns, self._json, strict=True)
        ]

    def source(self, first: int = 1, *, ordinality: bool = False) -> str:
        """The ``FROM`` item, its parameters numbered from ``first``; with ``ordinality``,
        ``v.n`` numbers the rows in the arrays' order."""
        arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(self._types))
        names = ", ".join((*self.columns, "n") if ordinality else self.columns)
        return f"unnest({arrays}){' WITH ORDINALITY' if ordinality else ''} AS v({names})"

    def value(self, name: str) -> str:
        """``v.<name>`` as the column's type (JSON cast back from its text)."""
        return f"CAST(v.{name} AS JSON)" if self._json[self.columns.index(name)] else f"v.{name}"

    def arrays(self, session: AsyncSession, rows: Sequence[Any], get: Getter = None) -> list[Any]:
        """``column_arrays`` of these columns."""
        return column_arrays(session, self.table, self.columns, rows, get)


Getter = Callable[[Any, str], Any] | None


def column_arrays(
    session: AsyncSession,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Any],
    get: Getter = None,
) -> list[list[Any]]:
    """One list per column, each value processed as SQLAlchemy would bind it on the
    session's dialect (map() runs a column's processor without a Python loop per value).
    Rows are mappings, or objects read with ``get`` (e.g. getattr)."""
    read = get or _item
    arrays: list[list[Any]] = []
    for name, process in _bind_processors(session.get_bind().dialect, table, columns):
        column = [read(row, name) for row in rows]
        arrays.append(column if process is None else list(map(process, column)))
    return arrays


def _item(row: Any, name: str) -> Any:
    return row[name]


BindProcessor = Callable[[Any], Any] | None
_PROCESSORS: dict[tuple[Dialect, Table, tuple[str, ...]], list[tuple[str, BindProcessor]]] = {}
_PROCESSORS_KEPT = 256
"""More than the hot path's few (table, columns) pairs; a test suite's many engines (each
with a dialect of its own) clear it now and then instead of growing it."""


def _bind_processors(
    dialect: Dialect, table: Table, columns: Sequence[str]
) -> list[tuple[str, BindProcessor]]:
    """Each column's bind processor on ``dialect``, looked up once per (table, columns).
    Asking each type for it on every statement (its dialect impl, then a new closure) cost
    about half of ``column_arrays`` for a row or a few: 27 → 12 µs for the tasks table's 19
    columns, 16 → 10 µs for the outbox's 7 (a hot-path statement builds two to four)."""
    key = (dialect, table, columns if isinstance(columns, tuple) else tuple(columns))
    found = _PROCESSORS.get(key)
    if found is None:
        if len(_PROCESSORS) >= _PROCESSORS_KEPT:
            _PROCESSORS.clear()
        found = _PROCESSORS[key] = [
            (name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in key[2]
        ]
    return found


_UNNESTS: dict[tuple[Table, tuple[str, ...]], Unnest] = {}


def unnest_for(session: AsyncSession, table: Table, columns: Sequence[str]) -> Unnest:
    """The :class:`Unnest` of these columns, built once per (table, columns)."""
    key = (table, tuple(columns))
    found = _UNNESTS.get(key)
    if found is None:
        found = _UNNESTS[key] = Unnest(table, key[1], session.get_bind().dialect)
    return found


_INSERTS: dict[tuple[Table, tuple[str, ...], tuple[str, ...], tuple[str, ...]], str] = {}


async def insert_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    returning: Sequence[str] = (),
    skip_conflicts_on: Sequence[str] = (),
    into: Deferred | None = None,
) -> list[Any]:
    """``INSERT INTO table`` the rows (each naming the same columns), in the arrays' order,
    as ONE statement; returns the ``returning`` columns of the rows inserted (asyncpg
    records). ``skip_conflicts_on``: ``ON CONFLICT (<these>) DO NOTHING``. Rows are inserted
    in order, so a serial id returned ascends with them. ``into``: added to that group
    instead (it returns nothing then), or sent as its last part when ``returning``."""
    if not rows:
        return []
    source = unnest_for(session, table, tuple(rows[0]))
    key = (table, source.columns, tuple(returning), tuple(skip_conflicts_on))
    sql = _INSERTS.get(key)
    if sql is None:
        names = ", ".join(source.columns)
        values = ", ".join(source.value(name) for name in source.columns)
        sql = (
            f"INSERT INTO {table.name} ({names}) "
            f"SELECT {values} FROM {source.source(ordinality=True)} ORDER BY v.n"
        )
        if skip_conflicts_on:
            sql += f" ON CONFLICT ({', '.join(skip_conflicts_on)}) DO NOTHING"
        if returning:
            sql += f" RETURNING {', '.join(returning)}"
        _INSERTS[key] = sql
    arrays = source.arrays(session, rows)
    if returning:
        if into is not None:
            return await into.send(session, (sql, arrays), returning=returning)
        return await fetch(session, sql, *arrays)
    await _write(session, sql, arrays, into)
    return []


_UPDATES: dict[tuple[Table, tuple[str, ...], str | None, bool], str] = {}


async def update_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Any],
    columns: Sequence[str],
    *,
    get: Getter = None,
    into: Deferred | None = None,
    version: str | None = None,
    guarded: bool = False,
) -> None:
    """``UPDATE table SET <columns> FROM unnest(…) WHERE table.id = v.id``: each row (a
    mapping, or an object read with ``get``) its own values, in ONE statement (``into``:
    added to that group instead).

    ``version``: a counter column every write moves on by one. ``guarded`` (with ``into``):
    each row carries the value of it that its caller read, without a lock; a row is written
    only where the column still holds that value when the statement runs, and the group
    fails with ``GuardFailed`` unless every row was (another writer got there first)."""
    if not rows:
        return
    if guarded and (version is None or into is None):
        raise ValueError("a guarded update names its version column and goes in a group")
    carried = (*columns, version) if guarded and version is not None else tuple(columns)
    source = unnest_for(session, table, ("id", *carried))
    key = (table, source.columns, version, guarded)
    sql = _UPDATES.get(key)
    if sql is None:
        sets = [f"{name} = {source.value(name)}" for name in columns]
        where = f"{table.name}.id = v.id"
        if guarded:
            # Under READ COMMITTED a row another transaction changed is re-checked on its
            # newest version: the guard sees what was committed, not the snapshot.
            sets.append(f"{version} = v.{version} + 1")
            where += f" AND {table.name}.{version} = v.{version} RETURNING {table.name}.id"
        elif version is not None:
            sets.append(f"{version} = {table.name}.{version} + 1")
        sql = _UPDATES[key] = (
            f"UPDATE {table.name} SET {', '.join(sets)} FROM {source.source()} WHERE {where}"
        )
    arrays = source.arrays(session, rows, get)
    if guarded:
        assert into is not None
        into.add(sql, arrays, expect_rows=len(rows))
        return
    await _write(session, sql, arrays, into)


async def _write(
    session: AsyncSession, sql: str, args: Sequence[Any], into: Deferred | None
) -> None:
    """Run a write now, or add it to ``into`` to go with that group."""
    if into is None:
        await execute(session, sql, *args)
    else:
        into.add(sql, args)
