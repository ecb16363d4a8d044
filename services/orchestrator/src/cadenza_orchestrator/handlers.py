"""Consumers' handlers: ``plan.requested`` expands a run, ``task.result`` moves it on.

Each handler is one transaction on a locked run row (state changes + staged events commit
together), then after-commit work: wake the outbox relay, update the Redis hot status, tell
workers to stop when the run failed, count metrics. Handlers are idempotent: a redelivered
event finds the run no longer ``pending`` or the attempt already recorded.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cadenza_events import Envelope, PlanRequested, TaskResult
from cadenza_runtime import Resources
from cadenza_state import RunRecord, RunStatus
from cadenza_workflow import ExpressionError, SpecValidationError
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession

from . import hot_status, machine, metrics, store
from .engine import Effects, Transition
from .graph import GraphCache, RunGraph
from .settings import OrchestratorSettings

log = logging.getLogger("cadenza.orchestrator")
tracer = trace.get_tracer("cadenza.orchestrator")


class RunHandlers:
    """The orchestrator's event handlers and the after-commit work they share."""

    def __init__(
        self, resources: Resources, settings: OrchestratorSettings, graphs: GraphCache
    ) -> None:
        self.resources = resources
        self.settings = settings
        self.graphs = graphs

    async def handle(self, env: Envelope[Any]) -> None:
        """The consumer's entry point."""
        payload = env.payload
        if isinstance(payload, PlanRequested):
            await self.on_plan(payload)
        elif isinstance(payload, TaskResult):
            await self.on_result(payload)
        else:
            log.warning("ignoring unexpected event %s (%s)", env.type, env.id)

    # -- plan.requested -------------------------------------------------------------------

    async def on_plan(self, plan: PlanRequested) -> None:
        started = time.perf_counter()
        with tracer.start_as_current_span(
            "orchestrator.plan", attributes={"cadenza.run_id": plan.run_id}
        ) as span:
            async with self.resources.sessions() as session, session.begin():
                run = await store.lock_run(session, plan.run_id)
                if run is None or run.status != RunStatus.PENDING:
                    # Unknown run, or planned already: a redelivered plan.requested.
                    reason = "unknown_run" if run is None else "duplicate"
                    span.set_attribute("cadenza.ignored", reason)
                    metrics.PLANS_IGNORED.labels(reason).inc()
                    log.info("plan.requested for run %s ignored: %s", plan.run_id, reason)
                    return
                effects = await self._plan(session, run)
            elapsed = time.perf_counter() - started
            metrics.PLAN_SECONDS.observe(elapsed)
            metrics.TRANSITION_SECONDS.labels("plan.requested").observe(elapsed)
            metrics.RUNS_STARTED.inc()
            span.set_attribute("cadenza.tasks", effects.tasks_added)
            await self.after_commit(effects, planned=True)

    async def _plan(self, session: AsyncSession, run: RunRecord) -> Effects:
        try:
            graph = self.graphs.put(RunGraph.build(run.id, run.spec, run.inputs))
        except (SpecValidationError, ExpressionError) as exc:
            return await self._reject(session, run, exc.to_dict())
        transition = self._transition(session, run, graph)
        return await transition.execute(machine.plan(graph))

    async def _reject(
        self, session: AsyncSession, run: RunRecord, error: dict[str, Any]
    ) -> Effects:
        """A run whose stored spec does not validate fails without a plan."""
        return await self._transition(session, run, None).execute(machine.reject_plan(error))

    # -- task.result ----------------------------------------------------------------------

    async def on_result(self, result: TaskResult) -> None:
        started = time.perf_counter()
        attributes: dict[str, str | int] = {
            "cadenza.run_id": result.run_id,
            "cadenza.task_id": result.task_id,
            "cadenza.attempt": result.attempt,
            "cadenza.status": result.status,
        }
        with tracer.start_as_current_span("orchestrator.result", attributes=attributes) as span:
            async with self.resources.sessions() as session, session.begin():
                outcome = await self._result(session, result)
            if isinstance(outcome, str):
                span.set_attribute("cadenza.ignored", outcome)
                metrics.RESULTS_IGNORED.labels(outcome).inc()
                log.debug(
                    "result %s attempt %d ignored: %s", result.task_id, result.attempt, outcome
                )
                return
            metrics.TRANSITION_SECONDS.labels("task.result").observe(time.perf_counter() - started)
            await self.after_commit(outcome)

    async def _result(self, session: AsyncSession, result: TaskResult) -> Effects | str:
        """Apply one result; returns the effects, or why the result changed nothing."""
        graph = self.graphs.get(result.run_id)
        run = await store.lock_run(session, result.run_id, with_spec=graph is None)
        if run is None:
            return "unknown_run"
        row = await store.load_task(session, result.task_id)
        if row is None or row.run_id != run.id:
            return "unknown_task"
        if not 1 <= result.attempt <= row.attempt:
            return "unknown_attempt"  # never dispatched: nothing to record it against
        recorded = await store.insert_attempt(
            session,
            task_id=row.id,
            attempt=result.attempt,
            status="handed_off" if result.handoff is not None else result.status,
            worker_id=result.worker_id,
            started_at=result.started_at,
            finished_at=result.finished_at,
            error=result.error.model_dump() if result.error is not None else None,
        )
        if not recorded:
            return "duplicate"
        reason = machine.ignore_reason(run.status, row, result)
        if reason is not None:
            return reason  # the attempt stays recorded (history), nothing else changes
        if graph is None:
            graph = self.graphs.put(RunGraph.build(run.id, run.spec, run.inputs))
        transition = self._transition(session, run, graph)
        transition.track(row)
        if run.status == RunStatus.CANCELLED:
            aggregate = None
            if row.item_index is not None:
                nodes = await store.load_nodes(session, run.id, [row.node_id])
                aggregate = nodes[0] if nodes else None
            return await transition.execute(machine.cancelled_result(row.node_id, row, aggregate))
        outcome = machine.apply_result(
            row.node_id, row, result, max_handoffs=self.settings.max_handoffs
        )
        return await transition.execute(outcome)

    # -- shared ---------------------------------------------------------------------------

    def _transition(
        self, session: AsyncSession, run: RunRecord, graph: RunGraph | None
    ) -> Transition:
        return Transition(
            session,
            run,
            graph,
            objects=self.resources.objects,
            registry=self.resources.registry,
            settings=self.settings,
        )

    async def after_commit(self, effects: Effects, *, planned: bool = False) -> None:
        """Work that must follow the commit; failures here are logged, never retried (the
        database already holds the truth and a redelivery would be a no-op)."""
        if effects.events:
            self.resources.relay.notify()
        metrics.TASKS_DISPATCHED.inc(sum(effects.dispatched.values()))
        for reason, n in effects.dispatched.items():
            if reason != "first":
                metrics.REDISPATCHES.labels(reason).inc(n)
        for status, n in effects.finished.items():
            metrics.TASKS_FINISHED.labels(status).inc(n)
        if effects.run_finished:
            metrics.RUNS_FINISHED.labels(effects.run_status).inc()
            if effects.run_status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                self.graphs.forget(effects.run_id)
        hot, ttl = self.resources.hot, self.settings.status_ttl_s
        try:
            if effects.run_status == RunStatus.FAILED:
                await hot_status.mark_cancelled(hot, effects.run_id, ttl_s=ttl)
            if effects.run_finished:
                async with self.resources.sessions() as session:
                    total, done = await store.count_tasks(session, effects.run_id)
                await hot_status.set_counts(
                    hot,
                    effects.run_id,
                    tenant_id=effects.tenant_id,
                    status=effects.run_status,
                    total=total,
                    done=done,
                    ttl_s=ttl,
                )
            elif planned:
                await hot_status.set_counts(
                    hot,
                    effects.run_id,
                    tenant_id=effects.tenant_id,
                    status=effects.run_status,
                    total=effects.tasks_added,
                    done=effects.tasks_done,
                    ttl_s=ttl,
                )
            else:
                await hot_status.add_counts(
                    hot,
                    effects.run_id,
                    status=effects.run_status,
                    added=effects.tasks_added,
                    done=effects.tasks_done,
                    ttl_s=ttl,
                )
        except Exception:
            log.exception(
                "run %s: hot status update failed (database is up to date)", effects.run_id
            )
