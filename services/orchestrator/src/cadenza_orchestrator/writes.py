"""The writes a batch's transitions leave for the end, made together.

A partition's fetch under load holds the results of many small runs. Each run's
transition used to write its new task rows, changed columns, attempt rows and outbox
events itself: four or five statements per run, each a round trip (and, on a small VM, a
socket write and read that cost as much CPU as the work). Closed transitions hand them
here instead, and ``flush`` makes ONE statement of each kind for the whole batch, inside
the batch's transaction: new rows first (attempts and updates may name them), then the
changed columns, the attempt rows, the runs' changes, the outbox; last, the final task
counts of the runs the batch finished, in one grouped query.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cadenza_events import Envelope, Topic, TopicRegistry
from cadenza_runtime.staging import OutboxRow, encode_outbox
from cadenza_state import StagedMessage, direct, insert_outbox, utcnow
from sqlalchemy.ext.asyncio import AsyncSession

from . import store
from .rows import RunRow, TaskRow

if TYPE_CHECKING:
    from .engine import Effects


@dataclass(eq=False)
class EarlySend:
    """A batch's task.ready records handed to the bus as its statement left, before the
    commit (``RunHandlers._send_early``, the ``early_dispatch`` setting)."""

    topic: str
    """Their (physical) topic: the batch's outbox rows of it are these records."""
    records: int
    sends: list[asyncio.Task[bool]]
    """One per slice of them (``encode_in_slices``): True once every record of it is
    acknowledged; False: its send failed."""
    outcome: str | None = None
    """What became of the batch's statement (``cadenza_orchestrator_early_dispatch_total``)."""

    def join(self, later: EarlySend) -> None:
        """A later slice's send, of the same batch."""
        self.records += later.records
        self.sends.extend(later.sends)

    async def sent(self) -> bool:
        """True once every slice is acknowledged; False if any send failed."""
        return all([await send for send in self.sends])


EARLY_SLICE = 512
"""Outbox rows encoded, and handed to the early dispatch, at a time (``encode_in_slices``)."""


async def encode_in_slices(
    registry: TopicRegistry,
    staged: Sequence[tuple[Topic, Envelope[Any]]],
    encoded: Callable[[Sequence[OutboxRow]], None],
) -> list[OutboxRow]:
    """The outbox rows of ``staged``, encoded ``EARLY_SLICE`` at a time, each slice handed to
    ``encoded`` at once and the event loop let run before the next: a plan's first
    task.ready go to Kafka while the rest of its thousands are encoded (~20 µs each)."""
    rows: list[OutboxRow] = []
    for start in range(0, len(staged), EARLY_SLICE):
        if start:
            await asyncio.sleep(0)  # the producer takes the slices before this one
        part = encode_outbox(registry, staged[start : start + EARLY_SLICE])
        encoded(part)
        rows.extend(part)
    return rows


@dataclass
class BatchWrites:
    """What closed transitions left to write; ``flush`` writes it all."""

    new: list[TaskRow] = field(default_factory=list)
    changed: dict[str, set[str]] = field(default_factory=dict)
    """Columns set on rows already in the database, by task id (``rows`` holds the rows)."""
    rows: dict[str, TaskRow] = field(default_factory=dict)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    staged: list[tuple[Topic, Envelope[Any]]] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    """The transitions' run rows: those whose status, output, error or budget changed are
    written at the end."""
    _owners: list[tuple[Effects, int]] = field(default_factory=list)
    """Each transition's effects and how many of ``staged`` are its events, in order."""
    _finished: list[Effects] = field(default_factory=list)
    outbox: list[StagedMessage] = field(default_factory=list)
    """The outbox rows ``flush`` inserted, for the committing process to publish."""
    early: EarlySend | None = None
    """This batch's task.ready records, if they were sent before its commit."""
    write_seconds: float = 0.0
    """Time spent in ``flush`` (the batch's statements; the caller adds its COMMIT's): the
    ``write`` phase of ``cadenza_orchestrator_batch_phase_seconds``."""

    def add(
        self,
        effects: Effects,
        *,
        new: list[TaskRow],
        changed: dict[str, set[str]],
        rows: dict[str, TaskRow],
        attempts: list[dict[str, Any]],
        staged: list[tuple[Topic, Envelope[Any]]],
        run: RunRow,
    ) -> None:
        """A closed transition's share (task ids are unique across runs: shares never
        overlap)."""
        self.new.extend(new)
        self.changed.update(changed)
        self.rows.update({task_id: rows[task_id] for task_id in changed})
        self.attempts.extend(attempts)
        self.staged.extend(staged)
        self.runs.append(run)
        self._owners.append((effects, len(staged)))
        if effects.run_finished:
            self._finished.append(effects)

    async def flush(
        self,
        session: AsyncSession,
        registry: TopicRegistry,
        *,
        publisher: str | None,
        unlocked: bool = False,
        encoded: Callable[[Sequence[OutboxRow]], None] | None = None,
    ) -> list[StagedMessage]:
        """Write everything, one statement per kind; each transition's ``Effects`` gets its
        outbox rows and, for a finished run, its final counts. Returns the outbox rows.

        On PostgreSQL the kinds go as ONE statement (``direct.Deferred``): none of these
        writes reads what another writes (the updates name rows inserted by earlier
        statements, a new row carries its own changes), so they may share a snapshot. Only
        a thousands-row plan's COPYs go on their own, first.

        ``unlocked`` (PostgreSQL): the batch read its runs and rows without a lock. The
        statement then holds only if no run's version moved since (``direct.GuardFailed``
        otherwise, nothing written), and it is sent on its own when no transaction is
        open: no BEGIN, no COMMIT.

        ``encoded``: given the outbox rows as they are encoded, a slice at a time
        (``encode_in_slices``), before anything is written (the early dispatch,
        ``RunHandlers._send_early``): a big plan's task rows go by a COPY of their own
        first, which its first tasks need not wait for."""
        started = time.perf_counter()
        try:
            return await self._flush(
                session, registry, publisher=publisher, unlocked=unlocked, encoded=encoded
            )
        finally:
            self.write_seconds += time.perf_counter() - started

    async def _flush(
        self,
        session: AsyncSession,
        registry: TopicRegistry,
        *,
        publisher: str | None,
        unlocked: bool,
        encoded: Callable[[Sequence[OutboxRow]], None] | None,
    ) -> list[StagedMessage]:
        postgres = direct.is_postgres(session)
        if unlocked and not postgres:
            raise ValueError("unlocked writes need PostgreSQL")
        into = direct.Deferred(alone=unlocked) if postgres else None
        if encoded is None:
            rows = encode_outbox(registry, self.staged)
        else:
            rows = await encode_in_slices(registry, self.staged, encoded)
        await store.insert_tasks(session, self.new, into=into)
        await store.update_tasks(session, self.changed, self.rows, into=into)
        await store.insert_attempts(session, self.attempts, into=into)
        await store.update_runs(session, self.runs, now=utcnow(), into=into, unlocked=unlocked)
        staged = await insert_outbox(session, rows, publisher=publisher, into=into)
        if into is not None:  # what no outbox insert took along (nothing: no statement)
            await into.send(session)
        start = 0
        for effects, count in self._owners:
            effects.outbox.extend(staged[start : start + count])
            start += count
        # The hot status's final counts, read in this transaction after the writes (a run
        # known whole in memory counted its own: ``Transition.close``).
        unknown = [e for e in self._finished if e.final_counts is None]
        if unknown:
            counts = await store.count_tasks_of(
                session, [e.run_id for e in unknown], alone=unlocked
            )
            for effects in unknown:
                effects.final_counts = counts.get(effects.run_id, (0, 0))
        self.outbox.extend(staged)
        self.new, self.changed, self.rows, self.attempts, self.staged = [], {}, {}, [], []
        self.runs = []
        self._owners, self._finished = [], []
        return staged
