"""Task rows as the orchestrator holds them: plain slotted objects, not ORM instances.

The orchestrator is the one writer of task rows, so it needs no identity map or unit of
work to know what changed: a ``Transition`` records which columns it set on which rows and
writes them in one statement per batch (``store.update_tasks``). Building
and flushing ORM instances was the largest share of its CPU per task (planning a 10,000
task fan-out spent a third of its time in SQLAlchemy's instrumentation).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(slots=True, eq=False)
class TaskRow:
    """One row of ``tasks``, field for field (a unit test keeps it in step with the
    table). Identity is the object: a transition holds one per task id."""

    id: str
    run_id: str
    node_id: str
    item_index: int | None
    status: str
    attempt: int
    max_attempts: int
    input: Any = None
    output: Any = None
    output_ref: str | None = None
    error: dict[str, Any] | None = None
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    ready_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    cache_key: str | None = None
    reused_from: str | None = None

    def values(self) -> dict[str, Any]:
        """Every column, for an INSERT."""
        return {name: getattr(self, name) for name in COLUMNS}


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(TaskRow))
"""The ``tasks`` columns in ``TaskRow``'s field order (the order rows are selected in)."""
