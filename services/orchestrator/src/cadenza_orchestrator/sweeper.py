"""The sweeper: dispatches again the tasks whose worker vanished.

Every ``sweep_interval_s`` it looks at dispatched (``ready``/``running``) tasks of running
runs and asks Redis about each current attempt:

- ``task:{id}:{attempt}:done`` present → the result is on its way: leave it, unless the
  marker is older than ``result_timeout_s`` — then the result was lost: **result_lost**;
- lease ``lease:task:{id}`` held for this attempt by a worker whose process heartbeat
  ``worker:{id}:alive`` is present → alive; its heartbeat gone → **worker_lost**;
- ``task:{id}:{attempt}:started`` present, no lease → the worker gave it back (stopped
  mid-task) or died: **worker_lost**;
- none of them and dispatched longer than ``requeue_after_s`` ago → no worker ever started
  it (a dead-lettered ``task.ready``, Redis lost its keys…): **not_started**. Belt and
  braces: the outbox already guarantees the event was published.

It also expires approvals nobody answered in time (``expires_at``): the approval becomes
``expired`` (audited as ``system:timeout``) and the task is dispatched again to hear it
(``on_timeout: reject``) or fails with ``approval_timeout`` (``on_timeout: fail``).

A lost task goes back to ``ready`` with ``attempt + 1`` (same params) until
``max_dispatches``, then fails with ``worker_lost``. With several orchestrators each sweeps
the runs whose results it applies (``sweeps``). Each run is handled in its own transaction
on its row locked ``FOR UPDATE SKIP LOCKED``, and the task rows are re-checked under the
lock, so even two sweepers of one run never dispatch the same attempt twice.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cadenza_events import HoldResolved
from cadenza_runtime import Resources, keys
from cadenza_runtime.periodic import Periodic
from cadenza_state import (
    ApprovalRecord,
    AuditLogEntry,
    HoldStatus,
    RunStatus,
    utcnow,
)
from opentelemetry import trace
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import machine, metrics, store
from .engine import Effects, Transition
from .graph import GraphCache, RunGraph
from .outcome import OPEN, Outcome
from .rows import RunRow
from .settings import OrchestratorSettings
from .turns import RunTurns

log = logging.getLogger("cadenza.orchestrator.sweeper")
tracer = trace.get_tracer("cadenza.orchestrator")

WORKER_LOST = "worker_lost"
NOT_STARTED = "not_started"
RESULT_LOST = "result_lost"


@dataclass(frozen=True)
class Holder:
    """Who holds a task lease: the value ``{worker_id}:{attempt}``."""

    worker: str
    attempt: int

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Holder | None:
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else raw
        worker, _, attempt = text.rpartition(":")
        try:
            return cls(worker, int(attempt))
        except ValueError:
            return cls(text, 0)


def done_at(raw: bytes | str) -> float:
    """When a done marker (``{status}:{epoch s}``) was set; 0 when it says no time."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        return float(text.rpartition(":")[2])
    except ValueError:
        return 0.0


class Sweeper:
    def __init__(
        self,
        resources: Resources,
        settings: OrchestratorSettings,
        graphs: GraphCache,
        after_commit: Callable[[Effects], Awaitable[None]],
        sweeps: Callable[[str], bool] = lambda run_id: True,
        *,
        turns: RunTurns | None = None,
        forget: Callable[[Iterable[str]], None] = lambda run_ids: None,
    ) -> None:
        """``turns``: this process's writers of a run, which the sweeper takes turns with
        (its own when None: a sweeper alone). ``forget``: makes the batches' memory drop
        the runs the sweeper writes (``RunMemory.forget``): their next batch reads them."""
        self.resources = resources
        self.settings = settings
        self.graphs = graphs
        self.after_commit = after_commit
        self.turns = turns if turns is not None else RunTurns()
        self.forget = forget
        self.sweeps = sweeps
        """Whether this sweeper looks at a run (by id): the orchestrator that applies the
        run's results does, so one process writes a run's state; the others leave it."""
        self._resume_after: tuple[datetime, str] | None = None
        """Where the last sweep's full page ended, ``(ready_at, task id)``: the next sweep
        goes on from there, so more live tasks than a page holds cannot hide a lost one
        behind them. None: from the oldest."""

    def periodic(self) -> Periodic:
        """The sweep every ``sweep_interval_s``, counted in ``SWEEPS`` by outcome."""
        return Periodic(
            "orchestrator-sweeper",
            self.sweep_once,
            self.settings.sweep_interval_s,
            log=log,
            passes=metrics.SWEEPS,
        )

    async def sweep_once(self) -> int:
        """One pass; returns how many tasks were dispatched again or failed."""
        return await self.expire_holds() + await self._sweep_dispatched()

    async def expire_holds(self) -> int:
        """Answer the approvals whose deadline passed with their ``on_timeout`` policy."""
        async with self.resources.sessions() as session:
            expired = await store.expired_holds(
                session, now=utcnow(), limit=self.settings.sweep_batch_size
            )
            pending = await store.count_pending_holds(session)
        for kind in ("approval", "in_doubt"):
            metrics.HOLDS_PENDING.labels(kind).set(pending.get(kind, 0))
        handled = 0
        for approval in [a for a in expired if self.sweeps(a.run_id)]:
            with tracer.start_as_current_span(
                "orchestrator.expire_hold",
                attributes={"cadenza.run_id": approval.run_id, "cadenza.task_id": approval.task_id},
            ):
                handled += await self._expire(approval.id, approval.run_id)
        return handled

    async def _expire(self, approval_id: str, run_id: str) -> int:
        async with self.turns.hold((run_id,), "sweep"):
            self.forget((run_id,))  # what a batch held of it is no longer the run
            return await self._expire_held(approval_id, run_id)

    async def _expire_held(self, approval_id: str, run_id: str) -> int:
        async with self.resources.sessions() as session, session.begin():
            graph = self.graphs.get(run_id)
            run = await store.lock_run(session, run_id, with_spec=graph is None, skip_locked=True)
            if run is None:
                return 0  # another orchestrator holds the run (it will see it next pass)
            approval = await session.scalar(
                select(ApprovalRecord).where(ApprovalRecord.id == approval_id).with_for_update()
            )
            now = utcnow()
            if (
                approval is None
                or approval.status != HoldStatus.PENDING
                or approval.expires_at is None
                or approval.expires_at > now
            ):
                return 0  # answered meanwhile
            approval.status = HoldStatus.EXPIRED.value
            approval.decided_at = now
            approval.decided_by = "system:timeout"
            approval.comment = f"no answer in time; on_timeout={approval.on_timeout}"
            session.add(
                AuditLogEntry(
                    tenant_id=approval.tenant_id,
                    actor="system:timeout",
                    action="approval.expired",
                    subject=f"approval:{approval.id}",
                    data={
                        "run_id": run_id,
                        "task_id": approval.task_id,
                        "on_timeout": approval.on_timeout,
                    },
                )
            )
            command = HoldResolved(
                run_id=run_id,
                task_id=approval.task_id,
                attempt=approval.attempt,
                approval_id=approval.id,
                kind=approval.kind,
                decision="expired",
                fail=approval.on_timeout == "fail",
                comment=approval.comment,
            )
            rows = await store.lock_tasks(session, [approval.task_id])
            if not rows or machine.hold_ignore_reason(run.status, rows[0], command) is not None:
                return 0
            transition = self._transition(session, run, graph)
            transition.track(rows[0])
            effects = await transition.execute(
                machine.resolve_hold(rows[0].node_id, rows[0], command)
            )
        metrics.HOLDS_RESOLVED.labels(command.kind, "expired").inc()
        log.warning("approval %s expired (fail task: %s)", approval_id, command.fail)
        await self.resources.relay.publish_committed(effects.outbox)
        await self.after_commit(effects)
        return 1

    async def _sweep_dispatched(self) -> int:
        limit = self.settings.sweep_batch_size
        async with self.resources.sessions() as session:
            candidates = await store.dispatched_tasks(
                session,
                limit=limit,
                before=utcnow() - timedelta(seconds=self.settings.sweep_min_age_s),
                after=self._resume_after,
            )
        # A full page: the next sweep takes the page after it. A short one reached the end:
        # the next starts again from the oldest.
        last = candidates[-1] if len(candidates) == limit else None
        self._resume_after = (last.ready_at, last.task_id) if last and last.ready_at else None
        mine = [c for c in candidates if self.sweeps(c.run_id)]
        metrics.SWEPT.labels("last" if self._resume_after is None else "full").inc(len(mine))
        if not mine:
            return 0
        lost = await self._lost(mine)
        by_run: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
        for task, reason in lost:
            by_run[task.run_id][task.task_id] = (task.attempt, reason)
        handled = 0
        for run_id, tasks in by_run.items():
            with tracer.start_as_current_span(
                "orchestrator.sweep",
                attributes={"cadenza.run_id": run_id, "cadenza.tasks": len(tasks)},
            ):
                handled += await self._redispatch(run_id, tasks)
        return handled

    async def _lost(
        self, candidates: list[store.DispatchedTask]
    ) -> list[tuple[store.DispatchedTask, str]]:
        hot = self.resources.hot
        # ONE command for every candidate's three keys: a pipeline of 3 x 500 commands cost
        # the orchestrator a fifth of its CPU while a big fan-out waited for workers.
        names = []
        for c in candidates:
            names += [
                hot.key(keys.task_lease(c.task_id)),
                hot.key(keys.task_done(c.task_id, c.attempt)),
                hot.key(keys.task_started(c.task_id, c.attempt)),
            ]
        flags = await hot.redis.mget(names)
        # The lease names its worker; that worker's ONE process heartbeat says it lives.
        holders: list[Holder | None] = [Holder.parse(flags[3 * i]) for i in range(len(candidates))]
        workers = sorted({h.worker for h in holders if h is not None})
        alive: set[str] = set()
        if workers:
            async with hot.redis.pipeline(transaction=False) as pipe:
                for worker in workers:
                    pipe.exists(hot.key(keys.worker_alive(worker)))
                alive = {w for w, up in zip(workers, await pipe.execute(), strict=True) if up}
        now = time.time()
        stale_before = utcnow() - timedelta(seconds=self.settings.requeue_after_s)
        lost = []
        for i, c in enumerate(candidates):
            holder, done, started = holders[i], flags[3 * i + 1], flags[3 * i + 2]
            if done is not None:
                # The result was published. Normally it is applied within moments; one
                # still unapplied long after was lost (e.g. dead-lettered): run it again
                # rather than leave the run waiting forever.
                if now - done_at(done) > self.settings.result_timeout_s:
                    lost.append((c, RESULT_LOST))
                continue
            if holder is not None and holder.attempt == c.attempt:
                if holder.worker not in alive:
                    lost.append((c, WORKER_LOST))
                continue
            if started is not None:
                lost.append((c, WORKER_LOST))  # started, then the lease was given back
            elif c.ready_at is not None and c.ready_at < stale_before:
                lost.append((c, NOT_STARTED))
        return lost

    def _transition(self, session: AsyncSession, run: RunRow, graph: RunGraph | None) -> Transition:
        """A transition on a locked run (its graph built and cached when not yet known)."""
        if graph is None:
            graph = self.graphs.put(RunGraph.for_run(run))
        return Transition(
            session,
            run,
            graph,
            objects=self.resources.objects,
            registry=self.resources.registry,
            settings=self.settings,
            publisher=self.resources.relay.publisher_id,
        )

    async def _redispatch(self, run_id: str, tasks: dict[str, tuple[int, str]]) -> int:
        async with self.turns.hold((run_id,), "sweep"):
            self.forget((run_id,))  # what a batch held of it is no longer the run
            return await self._redispatch_held(run_id, tasks)

    async def _redispatch_held(self, run_id: str, tasks: dict[str, tuple[int, str]]) -> int:
        async with self.resources.sessions() as session, session.begin():
            graph = self.graphs.get(run_id)
            run = await store.lock_run(session, run_id, with_spec=graph is None, skip_locked=True)
            if run is None or run.status != RunStatus.RUNNING:
                return 0  # another orchestrator holds the run, or it finished meanwhile
            rows = await store.lock_tasks(session, sorted(tasks))
            transition = self._transition(session, run, graph)
            transition.track(*rows)
            handled = 0
            for row in sorted(rows, key=lambda r: r.id):
                attempt, reason = tasks[row.id]
                # Re-check under the lock: a result or another sweeper may have been first.
                if (
                    row.status not in OPEN
                    or row.attempt != attempt
                    or run.status != RunStatus.RUNNING
                ):
                    continue
                await transition.apply(
                    machine.redispatch(
                        row.node_id,
                        row,
                        max_dispatches=self.settings.max_dispatches,
                        reason=reason,
                    )
                )
                log.warning("task %s attempt %d: %s, dispatching again", row.id, attempt, reason)
                handled += 1
            effects = await transition.execute(Outcome())
        await self.resources.relay.publish_committed(effects.outbox)
        await self.after_commit(effects)
        return handled
