"""The orchestrator's plain task rows stay in step with the ``tasks`` table."""

from __future__ import annotations

import pytest
from cadenza_orchestrator import TaskRow
from cadenza_orchestrator.rows import COLUMNS
from cadenza_state import TaskRecord

pytestmark = pytest.mark.unit


def test_task_row_has_every_column_of_the_table() -> None:
    # Rows are built positionally from a SELECT of COLUMNS and inserted from values():
    # a column added to the table and not here would be silently dropped on insert.
    assert set(COLUMNS) == {c.name for c in TaskRecord.__table__.columns}


def test_values_give_every_column() -> None:
    row = TaskRow(id="t", run_id="r", node_id="n", item_index=None, status="pending",
                  attempt=0, max_attempts=3, input={"x": 1})  # fmt: skip
    values = row.values()
    assert list(values) == list(COLUMNS)
    assert values["input"] == {"x": 1}
    assert values["output"] is None
