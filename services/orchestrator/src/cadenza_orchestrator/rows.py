"""Task rows as the orchestrator holds them: plain slotted objects, not ORM instances.

The orchestrator is the one writer of task rows, so it needs no identity map or unit of
work to know what changed: a ``Transition`` records which columns it set on which rows and
writes them in one statement per batch (``store.update_tasks``). Building
and flushing ORM instances was the largest share of its CPU per task (planning a 10,000
task fan-out spent a third of its time in SQLAlchemy's instrumentation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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


@dataclass(slots=True, eq=False)
class RunRow:
    """The columns of a ``runs`` row the orchestrator reads, in the order they are selected
    (``store.lock_runs``). ``spec``, ``inputs`` and ``replay`` are None unless asked for:
    a run whose graph is cached does not read its (large) spec again.

    The orchestrator sets ``status``, ``output``, ``error``, ``budget`` and
    ``finished_at``, always by assignment; ``changes`` names those that differ from the
    row as loaded, and the batch writes them with the run's other changes at its end
    (and ``version``, moved on by one, whatever changed)."""

    id: str
    tenant_id: str
    workflow_name: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    finished_at: datetime | None = None
    version: int = 0
    """As read: every write moves it on by one (``store.update_runs``)."""
    spec: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None
    _loaded: tuple[Any, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        self._loaded = self._written()

    def _written(self) -> tuple[Any, ...]:
        return (self.status, self.output, self.error, self.budget, self.finished_at)

    def changes(self) -> dict[str, Any]:
        """The written columns set to another value since the load (or the last write)."""
        return {
            name: value
            for name, value, before in zip(RUN_WRITTEN, self._written(), self._loaded, strict=True)
            if value is not before and value != before
        }

    def mark_written(self) -> None:
        """The database now holds the row as it is."""
        self._loaded = self._written()


RUN_WRITTEN: tuple[str, ...] = ("status", "output", "error", "budget", "finished_at")
"""The ``runs`` columns the orchestrator writes."""
RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRow) if not f.name.startswith("_"))
"""The ``runs`` columns in ``RunRow``'s field order."""
RUN_SPEC_COLUMNS: tuple[str, ...] = ("spec", "inputs", "replay")
"""Read only for the runs that need their graph built."""
