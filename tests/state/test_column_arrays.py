"""``column_arrays`` binds each value as SQLAlchemy would on the session's dialect. Its
bind processors are looked up once per (dialect, table, columns): a cached one must never
serve another dialect."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from cadenza_state.direct import column_arrays
from cadenza_state.models import TaskRecord
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

pytestmark = pytest.mark.unit

TABLE: Any = TaskRecord.__table__
COLUMNS = ("id", "ready_at", "input")
ROWS = [
    {"id": "t1", "ready_at": datetime(2026, 12, 7, 4, 0, tzinfo=UTC), "input": {"b": 1, "a": 2}},
    {"id": "t2", "ready_at": None, "input": {}},
]


class _SessionOn:
    """What column_arrays reads of a session: its bind's dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self._bind = SimpleNamespace(dialect=dialect)

    def get_bind(self) -> Any:
        return self._bind


def _as_sqlalchemy_binds(dialect: Dialect) -> list[list[Any]]:
    out = []
    for name in COLUMNS:
        process = TABLE.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        out.append([row[name] if process is None else process(row[name]) for row in ROWS])
    return out


def test_each_dialect_gets_its_own_processing_from_the_first_call_on() -> None:
    pg, lite = postgresql.asyncpg.dialect(), sqlite.aiosqlite.dialect()
    expected = {pg: _as_sqlalchemy_binds(pg), lite: _as_sqlalchemy_binds(lite)}
    assert expected[pg] != expected[lite]  # else this test could not tell them apart
    for _ in range(2):  # the second round is served from the lookup cache
        for dialect in (pg, lite):
            session: Any = _SessionOn(dialect)
            assert column_arrays(session, TABLE, COLUMNS, ROWS) == expected[dialect]
            assert column_arrays(session, TABLE, list(COLUMNS), ROWS) == expected[dialect]


def test_rows_read_with_a_getter() -> None:
    pg = postgresql.asyncpg.dialect()
    objects = [SimpleNamespace(**row) for row in ROWS]
    session: Any = _SessionOn(pg)
    arrays = column_arrays(session, TABLE, COLUMNS, objects, getattr)
    assert arrays == _as_sqlalchemy_binds(pg)
