"""The sweeper: dispatches again the tasks whose worker vanished.

Every ``sweep_interval_s`` it looks at dispatched (``ready``/``running``) tasks of running
runs and asks Redis about each current attempt:

- lease ``lease:task:{id}`` present → a worker holds it: alive;
- ``task:{id}:{attempt}:done`` present → the result is on its way: leave it;
- ``task:{id}:{attempt}:started`` present, no lease → the worker died: **worker_lost**;
- none of them and dispatched longer than ``requeue_after_s`` ago → no worker ever started
  it (a dead-lettered ``task.ready``, Redis lost its keys…): **not_started**. Belt and
  braces: the outbox already guarantees the event was published.

A lost task goes back to ``ready`` with ``attempt + 1`` (same params) until
``max_dispatches``, then fails with ``worker_lost``. Each run is handled in its own
transaction on its row locked ``FOR UPDATE SKIP LOCKED``, and the task rows are re-checked
under the lock, so several orchestrators never dispatch the same attempt twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta

from cadenza_runtime import Resources, keys
from cadenza_state import RunStatus, utcnow
from opentelemetry import trace

from . import machine, metrics, store
from .engine import Effects, Transition
from .graph import GraphCache, RunGraph
from .outcome import OPEN, Outcome
from .settings import OrchestratorSettings

log = logging.getLogger("cadenza.orchestrator.sweeper")
tracer = trace.get_tracer("cadenza.orchestrator")

WORKER_LOST = "worker_lost"
NOT_STARTED = "not_started"


class Sweeper:
    def __init__(
        self,
        resources: Resources,
        settings: OrchestratorSettings,
        graphs: GraphCache,
        after_commit: Callable[[Effects], Awaitable[None]],
    ) -> None:
        self.resources = resources
        self.settings = settings
        self.graphs = graphs
        self.after_commit = after_commit

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep_once()
                metrics.SWEEPS.labels("ok").inc()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.SWEEPS.labels("error").inc()
                log.exception("sweep failed; retrying next interval")

    async def sweep_once(self) -> int:
        """One pass; returns how many tasks were dispatched again or failed."""
        async with self.resources.sessions() as session:
            candidates = await store.dispatched_tasks(session, limit=self.settings.sweep_batch_size)
        if not candidates:
            return 0
        lost = await self._lost(candidates)
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
        async with hot.redis.pipeline(transaction=False) as pipe:
            for c in candidates:
                pipe.exists(hot.key(keys.task_lease(c.task_id)))
                pipe.exists(hot.key(keys.task_done(c.task_id, c.attempt)))
                pipe.exists(hot.key(keys.task_started(c.task_id, c.attempt)))
            flags = await pipe.execute()
        stale_before = utcnow() - timedelta(seconds=self.settings.requeue_after_s)
        lost = []
        for i, c in enumerate(candidates):
            lease, done, started = flags[3 * i : 3 * i + 3]
            if lease or done:
                continue
            if started:
                lost.append((c, WORKER_LOST))
            elif c.ready_at is not None and c.ready_at < stale_before:
                lost.append((c, NOT_STARTED))
        return lost

    async def _redispatch(self, run_id: str, tasks: dict[str, tuple[int, str]]) -> int:
        async with self.resources.sessions() as session, session.begin():
            graph = self.graphs.get(run_id)
            run = await store.lock_run(session, run_id, with_spec=graph is None, skip_locked=True)
            if run is None or run.status != RunStatus.RUNNING:
                return 0  # another orchestrator holds the run, or it finished meanwhile
            if graph is None:
                graph = self.graphs.put(RunGraph.build(run.id, run.spec, run.inputs))
            rows = await store.lock_tasks(session, sorted(tasks))
            transition = Transition(
                session,
                run,
                graph,
                objects=self.resources.objects,
                registry=self.resources.registry,
                settings=self.settings,
            )
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
        await self.after_commit(effects)
        return handled
