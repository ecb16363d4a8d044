"""Run history retention: the runs that finished long ago are deleted, whole.

With ``retention_days`` set, each orchestrator deletes, every ``retention_interval_s``, the
runs it owns (the runs of the ``task.result`` partitions it holds, as the sweeper) that
reached a terminal status before the cutoff:

- the run's objects first (``runs/{id}/`` in the object store: claim-checked params and
  outputs, LLM call records), so a pass that fails half-way leaves rows whose objects are
  gone, which the next pass deletes, never objects no row points to any more;
- then the agent loops' LangGraph checkpoints (thread ``{task id}:{attempt}``);
- then, in ONE transaction per page, the run rows, whose foreign keys take their tasks,
  attempts, tool effects, holds, LLM calls and tool calls with them, one audit entry per
  tenant naming the runs deleted, and a tombstone per run (``deleted_runs``: the API then
  answers 410 Gone, not 404).

The cutoff is ``now - retention_days`` but never later than the start of the current UTC
month: a tenant's day and month budgets are counted from ``llm_calls``, so a run that may
still count towards one is kept whatever the setting.

The same pass deletes the dead letters an operator replayed or discarded more than
``retention_days`` ago (a page per transaction, one audit entry per tenant; rows another
orchestrator is deleting are skipped, as dead letters belong to no partition). A pending
letter stays whatever its age: it waits for a person. The audit log is left alone; the
dedupe ledgers of triggers and schedules (``triggered_events``, ``schedule_fires``) have
their own retention in the trigger service, which writes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cadenza_runtime.periodic import Periodic
from cadenza_state import (
    AuditLogEntry,
    DeadLetterRecord,
    DeadLetterStatus,
    DeletedRunRecord,
    RunRecord,
    StateRuntime,
    TaskRecord,
    delete_in_pages,
    utcnow,
)
from cadenza_state.checkpoints import delete_checkpoint_threads, thread_id
from cadenza_state.models import TERMINAL_RUN_STATUSES
from opentelemetry import trace
from sqlalchemy import Row, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics, store
from .settings import OrchestratorSettings

log = logging.getLogger("cadenza.orchestrator.retention")
tracer = trace.get_tracer("cadenza.orchestrator")

ACTOR = "system:retention"
TERMINAL = sorted(s.value for s in TERMINAL_RUN_STATUSES)
# Objects of one run deleted at once: each is one list and one multi-delete request.
OBJECT_CONCURRENCY = 8


def cutoff(now: datetime, retention_days: float) -> datetime:
    """Runs that finished before this are deleted: ``retention_days`` ago, but never later
    than the start of ``now``'s UTC month (the tenant budgets' longest period)."""
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return min(now - timedelta(days=retention_days), month_start)


def _finished_before(before: datetime) -> list[Any]:
    """The runs a pass deletes: in a terminal status, finished before the cutoff."""
    return [
        RunRecord.finished_at.is_not(None),
        RunRecord.finished_at < before,
        RunRecord.status.in_(TERMINAL),
    ]


def _resolved_before(before: datetime) -> list[Any]:
    """The dead letters a pass deletes: replayed or discarded before ``before``."""
    return [
        DeadLetterRecord.resolved_at.is_not(None),
        DeadLetterRecord.resolved_at < before,
        DeadLetterRecord.status != DeadLetterStatus.PENDING.value,
    ]


def _audit_deleted(
    session: AsyncSession,
    subject: str,
    by_tenant: Mapping[str, Sequence[str | int]],
    *,
    ids_key: str,
    **cutoffs: datetime,
) -> None:
    """One audit entry per tenant naming what a page deleted (``{subject}.deleted``)."""
    for tenant, ids in by_tenant.items():
        session.add(
            AuditLogEntry(
                tenant_id=tenant,
                actor=ACTOR,
                action=f"{subject}.deleted",
                subject=subject,
                data={
                    "reason": "retention",
                    **{name: at.isoformat() for name, at in cutoffs.items()},
                    subject: len(ids),
                    ids_key: sorted(ids),
                },
            )
        )


@dataclass
class Pruned:
    """What one pass deleted."""

    runs: int = 0
    objects: int = 0
    checkpoints: int = 0
    dead_letters: int = 0
    examined: int = 0
    """Finished runs past the cutoff looked at, owned or not."""


@dataclass(frozen=True)
class Due:
    """What a pass would delete: runs that finished before ``cutoff``, per tenant (how
    many, and when the oldest finished)."""

    cutoff: datetime
    tenants: dict[str, tuple[int, datetime | None]]
    dead_letters: int = 0
    """Replayed or discarded dead letters resolved before ``now - retention_days``."""

    @property
    def runs(self) -> int:
        return sum(n for n, _ in self.tenants.values())


@dataclass(frozen=True)
class _Candidate:
    run_id: str
    tenant_id: str
    finished_at: datetime


class Retention:
    """``Retention(state, settings, owns)``; ``await prune_once()`` is one pass (tests,
    operators: ``cadenza retention run``), ``await due()`` what a pass would delete
    (``cadenza retention preview``); ``periodic()`` passes every
    ``retention_interval_s`` while ``retention_days`` is set."""

    def __init__(
        self,
        state: StateRuntime,
        settings: OrchestratorSettings,
        owns: Callable[[str], bool] = lambda run_id: True,
    ) -> None:
        self.state = state
        self.settings = settings
        self.owns = owns
        """Whether this process deletes a run (by id): the one that writes its state does."""

    def periodic(self) -> Periodic:
        """A pass every ``retention_interval_s``, counted by outcome, with the time of the
        last good one (``CadenzaRetentionFailing`` watches it)."""
        return Periodic(
            "orchestrator-retention",
            self.prune_once,
            self.settings.retention_interval_s,
            log=log,
            passes=metrics.RETENTION_PASSES,
            last_success=metrics.RETENTION_LAST_SUCCESS,
        )

    async def prune_once(self, now: datetime | None = None) -> Pruned:
        """Delete every owned run that finished before the cutoff, a page at a time; nothing
        while ``retention_days`` is 0 (keep every run)."""
        if not self.settings.retention_days:
            return Pruned()
        now = now or utcnow()
        before = cutoff(now, self.settings.retention_days)
        pruned = Pruned()
        after: tuple[datetime, str] | None = None
        with tracer.start_as_current_span(
            "orchestrator.retention", attributes={"cadenza.retention.cutoff": before.isoformat()}
        ) as span:
            while True:
                page = await self._candidates(before, after)
                pruned.examined += len(page)
                owned = [c for c in page if self.owns(c.run_id)]
                if owned:
                    await self._delete(owned, before, pruned)
                if len(page) < self.settings.retention_batch_size:
                    break
                after = (page[-1].finished_at, page[-1].run_id)
            pruned.dead_letters = await self._delete_dead_letters(
                now - timedelta(days=self.settings.retention_days)
            )
            span.set_attribute("cadenza.retention.runs", pruned.runs)
            span.set_attribute("cadenza.retention.objects", pruned.objects)
            span.set_attribute("cadenza.retention.dead_letters", pruned.dead_letters)
        if pruned.dead_letters:
            log.info("retention: deleted %d resolved dead letter(s)", pruned.dead_letters)
        if pruned.runs:
            log.info(
                "retention: deleted %d run(s) finished before %s (%d object(s), %d checkpoint "
                "row(s))",
                pruned.runs,
                before.isoformat(),
                pruned.objects,
                pruned.checkpoints,
            )
        return pruned

    async def due(self, now: datetime | None = None) -> Due:
        """What a pass at ``now`` would delete, over every orchestrator's runs: per tenant,
        how many runs and the oldest end."""
        now = now or utcnow()
        before = cutoff(now, self.settings.retention_days)
        stmt = (
            select(RunRecord.tenant_id, func.count(), func.min(RunRecord.finished_at))
            .where(*_finished_before(before))
            .group_by(RunRecord.tenant_id)
            .order_by(RunRecord.tenant_id)
        )
        letters = select(func.count()).where(
            *_resolved_before(now - timedelta(days=self.settings.retention_days))
        )
        async with self.state.sessions() as session:
            rows = (await session.execute(stmt)).all()
            dead_letters = int(await session.scalar(letters) or 0)
        return Due(before, {tenant: (int(n), oldest) for tenant, n, oldest in rows}, dead_letters)

    async def _candidates(
        self, before: datetime, after: tuple[datetime, str] | None
    ) -> list[_Candidate]:
        """One page of finished runs past the cutoff, oldest first, after ``after``."""
        stmt = (
            select(RunRecord.id, RunRecord.tenant_id, RunRecord.finished_at)
            .where(
                *_finished_before(before),
                *store.keyset_after(RunRecord.finished_at, RunRecord.id, after),
            )
            .order_by(RunRecord.finished_at, RunRecord.id)
            .limit(self.settings.retention_batch_size)
        )
        async with self.state.sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [_Candidate(run_id, tenant, at) for run_id, tenant, at in rows if at is not None]

    async def _delete(self, runs: Sequence[_Candidate], before: datetime, pruned: Pruned) -> None:
        started = time.perf_counter()
        with tracer.start_as_current_span(
            "orchestrator.retention.page", attributes={"cadenza.runs": len(runs)}
        ):
            run_ids = [c.run_id for c in runs]
            pruned.objects += await self._delete_objects(run_ids)
            pruned.checkpoints += await delete_checkpoint_threads(
                self.state.engine, await self._threads(run_ids)
            )
            async with self.state.sessions() as session, session.begin():
                deleted = set(
                    (
                        await session.execute(
                            delete(RunRecord)
                            .where(
                                RunRecord.id.in_(run_ids),
                                # Again, under the delete's row locks: a run resumed since
                                # the page was read is running, and stays.
                                *_finished_before(before),
                            )
                            .returning(RunRecord.id)
                        )
                    ).scalars()
                )
                by_tenant: dict[str, list[str]] = defaultdict(list)
                for c in runs:
                    if c.run_id in deleted:
                        by_tenant[c.tenant_id].append(c.run_id)
                        session.add(
                            DeletedRunRecord(
                                id=c.run_id,
                                tenant_id=c.tenant_id,
                                finished_at=c.finished_at,
                                reason="retention",
                            )
                        )
                _audit_deleted(
                    session, "runs", by_tenant, ids_key="run_ids", finished_before=before
                )
        pruned.runs += len(deleted)
        metrics.RETENTION_RUNS.inc(len(deleted))
        metrics.RETENTION_PAGE_SECONDS.observe(time.perf_counter() - started)

    async def _threads(self, run_ids: Sequence[str]) -> list[str]:
        """The checkpointer threads the runs' tasks may have: one per attempt."""
        async with self.state.sessions() as session:
            rows = await session.execute(
                select(TaskRecord.id, TaskRecord.attempt).where(TaskRecord.run_id.in_(run_ids))
            )
        return [thread_id(task_id, n) for task_id, attempt in rows for n in range(1, attempt + 1)]

    async def _delete_objects(self, run_ids: Sequence[str]) -> int:
        """Every run's ``runs/{id}/`` folder, a few runs at a time."""
        objects = self.state.objects
        limit = asyncio.Semaphore(OBJECT_CONCURRENCY)

        async def one(run_id: str) -> int:
            async with limit:
                return await objects.delete_prefix(f"runs/{run_id}/")

        counts = await asyncio.gather(*(one(r) for r in run_ids))
        metrics.RETENTION_OBJECTS.inc(sum(counts))
        return sum(counts)

    async def _delete_dead_letters(self, before: datetime) -> int:
        """Resolved dead letters older than ``before``, a page per transaction, each page
        with one audit entry per tenant naming the letters."""
        letters = DeadLetterRecord

        def audit(session: AsyncSession, rows: Sequence[Row[Any]]) -> None:
            by_tenant: dict[str, list[int]] = defaultdict(list)
            for row in rows:
                by_tenant[row.tenant_id].append(row.id)
            _audit_deleted(
                session, "dead_letters", by_tenant, ids_key="ids", resolved_before=before
            )
            metrics.RETENTION_DEAD_LETTERS.inc(len(rows))

        return await delete_in_pages(
            self.state.sessions,
            [letters.id],
            _resolved_before(before),
            letters.resolved_at,
            self.settings.retention_batch_size,
            returning=[letters.id, letters.tenant_id],
            on_page=audit,
        )
