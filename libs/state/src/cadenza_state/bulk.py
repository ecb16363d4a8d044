"""Many rows into one table at once: binary ``COPY`` on PostgreSQL (an unnest insert for a
few rows), one executemany elsewhere.

A plan of 10,000 tasks writes 10,000 task rows and 10,000 outbox rows in its transaction.
As ``INSERT … VALUES`` executemany, SQLAlchemy binds every parameter of every row and
PostgreSQL parses 1,000-row statements: ~300 ms per table on this machine. asyncpg's binary
``COPY`` of the same rows, on the session's own connection and transaction, takes a fraction
of that. Values go through the same SQLAlchemy bind processors as an INSERT would (JSON
serialiser, UTC timestamps), so what is stored is the same either way
(tests/state/test_bulk.py reads both back).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from cadenza_state.direct import (
    Deferred,
    column_arrays,
    copy_records,
    fetch,
    insert_rows,
    is_postgres,
)

#: Below this many rows an executemany is as fast (COPY costs a round trip of its own).
COPY_MIN_ROWS = 200


def uses_copy(session: AsyncSession, rows: int) -> bool:
    """Whether :func:`insert_many` copies ``rows`` rows on this session's database."""
    return rows >= COPY_MIN_ROWS and is_postgres(session)


async def insert_many(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    into: Deferred | None = None,
) -> None:
    """Insert ``rows`` (each naming the same columns) into ``table`` in the session's
    transaction. Columns a row leaves out get their server default; on PostgreSQL a column
    with only a Python-side default must be given (neither COPY nor the unnest insert can
    run it). ``into``: a few rows' unnest insert joins that group (a COPY runs at once)."""
    if not rows:
        return
    if not is_postgres(session):
        await session.execute(_insert(table), list(rows))
        return
    columns = list(rows[0])
    missing = [
        c.name
        for c in table.columns
        if c.name not in rows[0] and c.default is not None and c.server_default is None
    ]
    if missing:
        raise ValueError(f"{table.name}: give {', '.join(missing)} (Python-side defaults)")
    if not uses_copy(session, len(rows)):
        # A few rows (a small plan's tasks): ONE unnest insert straight on asyncpg, where
        # SQLAlchemy's executemany bound every parameter of every row.
        await insert_rows(session, table, rows, into=into)
        return
    records = list(zip(*column_arrays(session, table, columns, rows), strict=True))
    # In the session's transaction, begun here if this is its first statement: a COPY on
    # its own would commit by itself (a plan's unlocked write, whose guard may yet fail).
    await copy_records(session, table.name, records, columns)


@functools.cache
def _insert(table: Table) -> Any:
    """``INSERT INTO table``, built once per table (building costs as much as running it)."""
    return insert(table)


async def reserve_ids(session: AsyncSession, table: Table, count: int) -> list[int]:
    """``count`` values of ``table.id``'s sequence, ascending (PostgreSQL): rows copied with
    them keep the order an INSERT would have given them."""
    # One array in one row, straight on asyncpg: a row per id through SQLAlchemy's result
    # cost ~2 µs an id (a plan of 10,000 tasks reserves 10,000).
    rows = await fetch(
        session,
        "SELECT array_agg(nextval(pg_get_serial_sequence($1, 'id'))) FROM generate_series(1, $2)",
        table.name,
        count,
    )
    return sorted(rows[0][0] or ())
