"""What a transition rule decides, as plain data. Rules never touch the database; the
engine applies an ``Outcome`` through ``store`` and runs its follow-up ``steps``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cadenza_events import Hold
from cadenza_state import TaskStatus

OPEN = frozenset({TaskStatus.PENDING.value, TaskStatus.READY.value, TaskStatus.RUNNING.value})
"""Rows with work ahead."""
SETTLED = frozenset(
    {TaskStatus.SUCCEEDED.value, TaskStatus.RECOVERED.value, TaskStatus.SKIPPED.value}
)
"""Finished so that dependants may go on (a failed task is not: it awaits its fallback)."""
TERMINAL = SETTLED | {TaskStatus.FAILED.value, TaskStatus.CANCELLED.value}
HELD = frozenset(
    {TaskStatus.AWAITING_APPROVAL.value, TaskStatus.IN_DOUBT.value, TaskStatus.PAUSED.value}
)
"""Open, but waiting for a person (an answer, or a budget raise and a resume): no worker has
them (not in ``OPEN``, whose index serves the hot path; ``store.has_open_tasks`` checks
both)."""


# -- follow-up steps (the engine's work queue) ---------------------------------------------


@dataclass(frozen=True)
class Advance:
    """Re-check whether a pending task may start (its prerequisites changed)."""

    node_id: str


@dataclass(frozen=True)
class Start:
    """Start a task whose prerequisites are met: needs its expression context loaded."""

    node_id: str


@dataclass(frozen=True)
class Settled:
    """A task finished as succeeded, recovered or skipped: its dependants may go on."""

    node_id: str


@dataclass(frozen=True)
class Failed:
    """A task failed for good: run its fallback or fail the run."""

    node_id: str


@dataclass(frozen=True)
class InstanceFinished:
    """One fan-out instance reached a terminal status."""

    task_id: str


@dataclass(frozen=True)
class FanIn:
    """Every instance of a fan-out task finished: collect their outputs."""

    node_id: str


@dataclass(frozen=True)
class Recover:
    """A fallback succeeded: the tasks it recovers become ``recovered``."""

    node_id: str


@dataclass(frozen=True)
class FinishRun:
    """Nothing is left to run: render the run output and close the run."""


Step = Advance | Start | Settled | Failed | InstanceFinished | FanIn | Recover | FinishRun


# -- changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskUpdate:
    """Set ``values`` on the task row ``task_id``. An ``output`` value too large for a row is
    claim-checked by the store."""

    task_id: str
    values: dict[str, Any]


@dataclass(frozen=True)
class NewTask:
    """Insert a task row (a node row at planning, or a fan-out instance)."""

    task_id: str
    node_id: str
    item_index: int | None
    status: str
    max_attempts: int
    input: Any = None


@dataclass(frozen=True)
class Dispatch:
    """Mark a task ``ready`` with this ``attempt`` and stage its ``task.ready``. ``params``
    too large for an event go to the object store (``params_ref``)."""

    task_id: str
    node_id: str
    attempt: int
    params: dict[str, Any] | None = None
    params_ref: str | None = None
    reason: str = "first"
    cache_key: str | None = None
    """What determines the output (kept on the row; a later rerun or fork compares it)."""
    overrides: dict[str, Any] | None = None
    """Agent overrides of a fork (``system_prompt``, ``model``), sent to the worker."""


@dataclass(frozen=True)
class Cached:
    """A recorded output a task may complete from instead of running (a rerun or fork):
    the parent run's output of the same task, or one replaced by hand."""

    source: str
    """``parent`` (the parent run's recorded output) or ``override`` (replaced by hand)."""
    task_id: str | None = None
    """The parent's task whose output this is (None for a hand-replaced output)."""
    output: Any = None
    output_ref: str | None = None
    cache_key: str | None = None
    """The key the output was recorded under; None reuses it whatever this task's key."""


@dataclass(frozen=True)
class Attempt:
    """A ``task_attempts`` row the orchestrator writes itself: a lost dispatch, or the
    fan-in of a fan-out task (its one attempt: expanded, then joined)."""

    task_id: str
    attempt: int
    status: str
    error: dict[str, Any] | None = None
    started_at: datetime | None = None


@dataclass(frozen=True)
class Event:
    """A ``RunEvent`` for the run's timeline."""

    kind: str
    task_id: str | None = None
    node_id: str | None = None
    status: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunChange:
    """New run status; ``failed`` and ``cancelled`` also cancel every open task and stop
    the workers."""

    status: str
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class CancelInstances:
    """Cancel the still-open instances of a fan-out task (one of them failed)."""

    node_id: str


@dataclass(frozen=True)
class HoldRequest:
    """Record a held tool call in the approvals inbox (once per task attempt and call)."""

    approval_id: str
    task_id: str
    node_id: str
    attempt: int
    hold: Hold


@dataclass
class Outcome:
    """Everything one rule decided."""

    new_tasks: list[NewTask] = field(default_factory=list)
    updates: list[TaskUpdate] = field(default_factory=list)
    dispatches: list[Dispatch] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    cancel_instances: list[CancelInstances] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    run: RunChange | None = None
    steps: list[Step] = field(default_factory=list)
    holds: list[HoldRequest] = field(default_factory=list)
