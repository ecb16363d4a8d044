"""The runs this orchestrator last wrote, held whole in memory.

The owner of a run's partition applies its batches one after the other, and it is the one
writer of task rows. So once it has planned a run, it knows every row of it as well as the
database does: a results batch of that run needs no read at all — no run row, no task
rows, no recorded attempts, no "is any task open?" at its end — and a chain's step is ONE
statement (the batch's guarded write) instead of three.

What keeps this safe is not the memory but the write: every write of a run moves its
``version`` on (``store.update_runs``), and a batch applied from memory writes only where
the version is still the one it holds. A command, the sweeper, or another orchestrator
that wrote the run meanwhile makes that write fail whole; the batch is then applied again
the locked way, from the database, and the run is forgotten here. A run is also forgotten
when its batch fails for any reason, when it finishes, when a transition wrote rows in the
database that it does not hold (a cancel's bulk update), and, least recently used first,
when the rows held pass ``run_memory_rows``.

A run enters when this process plans it (its plan creates every one of its rows, so
nothing is missing), or, planned elsewhere or before a restart, when a results batch of it
finds it missing: the batch then reads the run whole (``store.read_whole_runs``, after the
run's row, so the guard covers the read) instead of only the rows it needs, once, and
the run's later batches read nothing. That is the rebuild a new owner of the run's
partition does — on the run's first batch rather than at the assignment, so a rebalance
waits for no read, and only runs still being answered are read. A rebuilt run enters only
into room left (it never pushes a held run out); one too big for it is not read whole
again.

A rebalance keeps what it can: after one that took partitions away, only the runs whose
``task.result`` partition this process no longer holds are forgotten (``keep_where``, asked
of the consumer's own partitioner: a run's plan, commands and results share its partition
number). Kafka's assignors are eager — every partition is revoked, then assigned again —
so without this every rebalance (a second orchestrator joining, one leaving) would make the
survivor read every run it is busy with again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .outcome import HELD, OPEN, TERMINAL
from .rows import RunRow, TaskRow

_BIG_REMEMBERED = 4096
"""How many runs found too big to hold are remembered as such (the oldest first out)."""

_WAITING = OPEN | HELD
"""Statuses of a row with work ahead or waiting for a person: the run is not over."""


@dataclass(eq=False)
class RunState:
    """A run as this process last wrote it: its row and EVERY one of its task rows, and
    the attempts recorded for them. The objects are the ones the next batch's transition
    changes in place; the batch refreshes the state once its write holds."""

    run: RunRow
    rows: dict[str, TaskRow]
    attempts: set[tuple[str, int]] = field(default_factory=set)
    """``(task_id, attempt)`` of every attempt recorded for the run's tasks."""
    waiting: set[str] = field(init=False)
    """Ids of the rows whose status is open or held (``has_open_tasks``'s question), kept
    as rows are absorbed rather than scanned for at each batch's end."""

    def __post_init__(self) -> None:
        self.waiting = {i for i, row in self.rows.items() if row.status in _WAITING}

    def absorb(self, rows: Iterable[TaskRow], attempts: Iterable[tuple[str, int]]) -> None:
        """A batch's write held: the rows its transition held (changed or new) and the
        attempts it recorded are now the run's."""
        for row in rows:
            self.rows[row.id] = row
            if row.status in _WAITING:
                self.waiting.add(row.id)
            else:
                self.waiting.discard(row.id)
        self.attempts.update(a for a in attempts if a[0] in self.rows)


def counts(rows: Iterable[TaskRow]) -> tuple[int, int]:
    """``(total, finished)`` of a run's rows, as ``store.count_tasks_of`` counts them."""
    total = finished = 0
    for row in rows:
        total += 1
        finished += row.status in TERMINAL
    return total, finished


class RunMemory:
    """Whole runs by id, least recently used first out once more than ``max_rows`` task
    rows (0 holds none) or ``max_runs`` runs are held. A run is used from here only while
    its graph is cached too, so ``max_runs`` is the graph cache's size."""

    def __init__(self, max_rows: int, max_runs: int = 256) -> None:
        self.max_rows = max_rows
        self.max_runs = max_runs
        self._runs: OrderedDict[str, RunState] = OrderedDict()
        self._rows = 0
        self._big: OrderedDict[str, None] = OrderedDict()
        """Runs read whole that did not fit (``fill``): not read whole again."""

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def rows(self) -> int:
        """Task rows held, over every run (as of each run's last refresh)."""
        return self._rows

    def get(self, run_id: str) -> RunState | None:
        state = self._runs.get(run_id)
        if state is not None:
            self._runs.move_to_end(run_id)
        return state

    def holds(self, run: RunRow) -> RunState | None:
        """The state whose run row IS this object: a batch that took ``run`` from here."""
        state = self._runs.get(run.id)
        return state if state is not None and state.run is run else None

    def put(self, state: RunState) -> None:
        """Hold a run just planned. Its spec, inputs and replay are let go: they only build
        the graph, which the graph cache holds (and without which the run is not used)."""
        state.run.spec = state.run.inputs = state.run.replay = None
        self.forget([state.run.id])
        self._runs[state.run.id] = state
        self._rows += len(state.rows)
        self._bound()

    def may_fill(self, run_id: str) -> bool:
        """Whether a run this process does not hold is worth reading whole (``fill``): memory
        is on, has room for one more run, and the run was not found too big before."""
        return bool(self.max_rows) and len(self._runs) < self.max_runs and run_id not in self._big

    def fill(self, state: RunState) -> bool:
        """Hold a run rebuilt from the database (planned elsewhere, or before a restart) if
        it fits in the room left: unlike a run just planned, it never pushes a held run out
        (the runs this process is busy with stay). One that does not fit is remembered as
        too big, so that its batches go on reading only what they need."""
        if len(state.rows) > self.max_rows - self._rows or len(self._runs) >= self.max_runs:
            self._big[state.run.id] = None
            while len(self._big) > _BIG_REMEMBERED:
                self._big.popitem(last=False)
            return False
        self.put(state)
        return True

    def absorb(
        self, state: RunState, rows: Iterable[TaskRow], attempts: Iterable[tuple[str, int]]
    ) -> None:
        """``RunState.absorb`` on a held run, keeping the count of rows held."""
        before = len(state.rows)
        state.absorb(rows, attempts)
        if self._runs.get(state.run.id) is state:
            self._rows += len(state.rows) - before
            self._runs.move_to_end(state.run.id)
            self._bound()

    def _bound(self) -> None:
        """Least recently used out until within ``max_rows`` and ``max_runs`` (a run bigger
        than ``max_rows`` on its own is not held at all)."""
        while (self._rows > self.max_rows or len(self._runs) > self.max_runs) and self._runs:
            _, evicted = self._runs.popitem(last=False)
            self._rows -= len(evicted.rows)

    def clear(self) -> None:
        """Hold nothing (and forget which runs were too big)."""
        self._runs.clear()
        self._big.clear()
        self._rows = 0

    def keep_where(self, holds: Callable[[str], bool | None]) -> int:
        """After a rebalance that took partitions away: forget every run ``holds`` does not
        answer True for (False: its partition went elsewhere; None: not known); returns how
        many were forgotten. The others' partitions came straight back: no one else
        consumed them in between, unless the group dropped this process meanwhile (it
        stalled past its session); then the guard of each stale run's next write fails,
        and that batch is applied the locked way."""
        gone = [run_id for run_id in self._runs if holds(run_id) is not True]
        self.forget(gone)
        return len(gone)

    def forget(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self._rows -= self._size(run_id)
            self._runs.pop(run_id, None)

    def _size(self, run_id: str) -> int:
        state = self._runs.get(run_id)
        return len(state.rows) if state is not None else 0
