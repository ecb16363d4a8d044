"""The per-message protocol of `task.ready` (docs/execution.md, followed step by step):

done marker? → skip · lease taken? → another worker runs it, ack · mark started ·
run cancelled? → report `cancelled` · tasks row ready→running · heartbeat + execute
(retries, timeouts) · claim-check the output · publish ONE task.result · done marker ·
release the lease.

Task failures are results, never exceptions; only infrastructure trouble (database, object
store, broker down) raises, so the bus retries the message and then dead-letters it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from enum import StrEnum
from typing import Any

from cadenza_events import (
    Envelope,
    Handoff,
    NonRetryableError,
    TaskError,
    TaskReady,
    TaskResult,
)
from cadenza_runtime import Resources
from cadenza_state import TERMINAL_TASK_STATUSES, TaskRecord, TaskStatus, utcnow
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from sqlalchemy import CursorResult, select, update

from . import metrics
from .claimcheck import ClaimCheck
from .errors import InvalidOutputError, ParamsUnavailableError, to_task_error
from .execution import Outcome, Progress, run_with_retries
from .kinds import ExecutorRegistry, TaskCall
from .lease import Heartbeat, Lease, Markers, StopReason, stop_task
from .reporting import Reporter
from .settings import WorkerSettings
from .tools import ToolContext

log = logging.getLogger("cadenza.worker")
tracer = trace.get_tracer("cadenza.worker")

_CANCELLED_ERROR = TaskError(code="cancelled", message="the run was cancelled", retryable=False)


class Claim(StrEnum):
    """What the tasks row says about running this attempt."""

    STARTED = "started"  # ready → running: ours
    RESUMED = "resumed"  # already running this attempt: an earlier delivery was interrupted
    CANCELLED = "cancelled"  # the gateway cancelled it before it started
    STALE = "stale"  # the task moved on to another attempt (re-dispatched)
    FINISHED = "finished"  # already terminal
    MISSING = "missing"  # no such task row


class TaskHandler:
    def __init__(
        self, resources: Resources, settings: WorkerSettings, executors: ExecutorRegistry
    ) -> None:
        self._resources = resources
        self._settings = settings
        self._executors = executors
        self._markers = Markers(resources.hot, settings.marker_ttl_s)
        self._claims = ClaimCheck(resources.objects, settings.claim_check_bytes)
        self.reporter = Reporter(
            resources.publisher, settings.worker_id, settings.result_publish_timeout_s
        )

    async def handle(self, env: Envelope[Any]) -> None:
        task = env.payload
        if not isinstance(task, TaskReady):
            raise NonRetryableError(
                f"expected a task.ready event, got {env.type}", code="unexpected_event"
            )
        if await self._markers.is_done(task.task_id, task.attempt):
            metrics.SKIPPED.labels("done").inc()
            return
        lease = Lease(
            self._resources.hot,
            task.task_id,
            f"{self._settings.worker_id}:{task.attempt}",
            self._settings.lease_ttl_s,
        )
        if not await lease.acquire():
            metrics.LEASES_CONTENDED.inc()
            log.debug("%s#%d is running elsewhere; ack", task.task_id, task.attempt)
            return
        try:
            # It may have finished between our first check and taking the lease.
            if await self._markers.is_done(task.task_id, task.attempt):
                metrics.SKIPPED.labels("done").inc()
                return
            await self._run(env, task, lease)
        finally:
            await lease.release()

    async def _run(self, env: Envelope[Any], task: TaskReady, lease: Lease) -> None:
        await self._markers.mark_started(task.task_id, task.attempt, lease.owner)
        label = self._executors.label(task)
        if await self._markers.run_cancelled(task.run_id):
            await self._report(env, task, Outcome("cancelled", 0), None, label, 0.0)
            return
        started_at = utcnow()
        claim = await self._claim_row(task, started_at)
        if claim is Claim.CANCELLED:
            await self._report(env, task, Outcome("cancelled", 0), None, label, 0.0)
            return
        if claim not in (Claim.STARTED, Claim.RESUMED):
            metrics.SKIPPED.labels(claim.value).inc()
            # A re-dispatch makes older attempts stale (normal); a missing row is not.
            level = logging.WARNING if claim is Claim.MISSING else logging.INFO
            log.log(level, "skipping %s#%d: %s", task.task_id, task.attempt, claim.value)
            return
        if claim is Claim.STARTED:
            latency = (started_at - task.ready_at).total_seconds()
            metrics.DISPATCH_LATENCY.labels(task.kind, label).observe(max(0.0, latency))
        self.reporter.event(
            env, task, "task.started", "running", {"resumed": claim is Claim.RESUMED}
        )
        attributes: dict[str, AttributeValue] = {
            "cadenza.run_id": task.run_id,
            "cadenza.task_id": task.task_id,
            "cadenza.node_id": task.node_id,
            "cadenza.attempt": task.attempt,
            "cadenza.task.kind": task.kind,
            "cadenza.tool.name": task.name,
            "cadenza.tenant_id": env.tenant_id,
        }
        with tracer.start_as_current_span(f"task {task.name}", attributes=attributes) as span:
            clock = time.perf_counter()
            metrics.IN_FLIGHT.inc()
            try:
                outcome = await self._execute_watched(env, task, lease, label)
            finally:
                metrics.IN_FLIGHT.dec()
            span.set_attribute("cadenza.task.status", outcome.status if outcome else "abandoned")
            if outcome is None:
                return  # lease lost: whoever holds it now reports this task
            span.set_attribute("cadenza.task.tries", outcome.tries)
            if outcome.error is not None:
                span.set_attribute("cadenza.error.code", outcome.error.code)
            await self._report(env, task, outcome, started_at, label, time.perf_counter() - clock)

    async def _claim_row(self, task: TaskReady, now: datetime) -> Claim:
        running = {"worker_id": self._settings.worker_id, "heartbeat_at": now}
        async with self._resources.sessions() as session, session.begin():
            result = await session.execute(
                update(TaskRecord)
                .where(
                    TaskRecord.id == task.task_id,
                    TaskRecord.attempt == task.attempt,
                    TaskRecord.status == TaskStatus.READY.value,
                )
                .values(status=TaskStatus.RUNNING.value, started_at=now, **running)
                .execution_options(synchronize_session=False)
            )
            assert isinstance(result, CursorResult)
            if result.rowcount == 1:
                return Claim.STARTED
            row = (
                await session.execute(
                    select(TaskRecord.status, TaskRecord.attempt).where(
                        TaskRecord.id == task.task_id
                    )
                )
            ).one_or_none()
            if row is None:
                return Claim.MISSING
            status, attempt = row
            if attempt != task.attempt:
                return Claim.STALE
            if status == TaskStatus.RUNNING.value:
                await session.execute(
                    update(TaskRecord)
                    .where(TaskRecord.id == task.task_id)
                    .values(**running)
                    .execution_options(synchronize_session=False)
                )
                return Claim.RESUMED
            if status == TaskStatus.CANCELLED.value:
                return Claim.CANCELLED
            if status in TERMINAL_TASK_STATUSES or status == "recovered":
                return Claim.FINISHED
            return Claim.STALE  # pending: not dispatched as this attempt (yet)

    async def _execute_watched(
        self, env: Envelope[Any], task: TaskReady, lease: Lease, label: str
    ) -> Outcome | None:
        """Run the attempt in its own asyncio task so the heartbeat can really stop it."""
        progress = Progress()
        work = asyncio.create_task(self._execute(env, task, label, progress))
        heartbeat = Heartbeat(
            lease, self._markers, task.run_id, self._settings.heartbeat_interval_s
        )
        watcher = asyncio.create_task(heartbeat.watch(work))
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:
            # The worker is stopping: stop the tool too; the unacked task.ready is
            # redelivered and resumed (effects replay from the journal).
            await stop_task(work)
            raise
        finally:
            await stop_task(watcher)
        if work.cancelled():
            if heartbeat.reason is StopReason.CANCELLED:
                return Outcome("cancelled", progress.tries, error=_CANCELLED_ERROR)
            return None
        return work.result()

    async def _execute(
        self, env: Envelope[Any], task: TaskReady, label: str, progress: Progress
    ) -> Outcome:
        try:
            params = await self._claims.load_params(task)
        except ParamsUnavailableError as exc:
            return Outcome("failed", 0, error=to_task_error(exc))

        async def try_once(number: int) -> Any:
            metrics.TRIES.labels(label).inc()
            ctx = ToolContext(
                tenant_id=env.tenant_id,
                run_id=task.run_id,
                task_id=task.task_id,
                node_id=task.node_id,
                attempt=task.attempt,
                try_number=number,
                hot=self._resources.hot,
                objects=self._resources.objects,
                sessions=self._resources.sessions,
            )

            def emit(kind: str, data: dict[str, Any]) -> None:
                self.reporter.event(env, task, kind, data=data)

            return await self._executors.execute(TaskCall(task, params, ctx, emit))

        def on_retry(number: int, exc: BaseException, delay_s: float) -> None:
            error = to_task_error(exc)
            metrics.RETRIES.labels(label, error.code).inc()
            log.info(
                "%s#%d try %d failed (%s); retrying", task.task_id, task.attempt, number, error.code
            )
            self.reporter.event(
                env,
                task,
                "task.retrying",
                "running",
                {"try": number, "error": error.model_dump(), "delay_s": round(delay_s, 3)},
            )

        return await run_with_retries(task, try_once, progress, on_retry)

    async def _report(
        self,
        env: Envelope[Any],
        task: TaskReady,
        outcome: Outcome,
        started_at: datetime | None,
        label: str,
        duration_s: float,
    ) -> None:
        status, output, output_ref, error = outcome.status, outcome.output, None, outcome.error
        handoff = output if isinstance(output, Handoff) else None
        if handoff is not None:
            output = None  # the task goes on with another agent; it has no output yet
        elif status == "succeeded":
            try:
                output, output_ref = await self._claims.store_output(task, output)
            except InvalidOutputError as exc:
                status, output, error = "failed", None, to_task_error(exc)
        if status == "cancelled" and error is None:
            error = _CANCELLED_ERROR
        result = TaskResult(
            run_id=task.run_id,
            task_id=task.task_id,
            attempt=task.attempt,
            status=status,
            output=output,
            output_ref=output_ref,
            error=error,
            tries=outcome.tries,
            handoff=handoff,
            worker_id=self._settings.worker_id,
            started_at=started_at,
        )
        await self.reporter.result(env, task, result)
        try:
            await self._markers.mark_done(task.task_id, task.attempt, status)
        except Exception:  # the result is out; a redelivery would only repeat it (deduped)
            log.warning("could not mark %s#%d done", task.task_id, task.attempt, exc_info=True)
        metrics.TASKS.labels(task.kind, label, status).inc()
        metrics.TASK_DURATION.labels(task.kind, label, status).observe(duration_s)
        self.reporter.event(
            env,
            task,
            "task.finished",
            status,
            {
                "tries": outcome.tries,
                "duration_s": round(duration_s, 6),
                "error": error.model_dump() if error else None,
                "output_ref": output_ref,
            },
        )
