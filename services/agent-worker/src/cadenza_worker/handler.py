"""The per-message protocol of `task.ready` (docs/execution.md, followed step by step):

claim (ONE Redis call: done already? → skip · another worker holds it? → ack · take the
lease, mark started, run cancelled? → report `cancelled`) · execute under the process's
one heartbeat (retries, timeouts, cancel watch) · claim-check the output · publish ONE
task.result · finish (ONE Redis call: done marker + lease released).

The worker writes no database row for a tool task: the orchestrator alone writes task
state, from the result (which carries the worker, start time, tries and outcome).
Task failures are results, never exceptions; only infrastructure trouble (Redis, object
store, broker down) raises, and the bus then holds the message until the store is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from functools import partial
from typing import Any, Literal

from cadenza_events import (
    Envelope,
    Handoff,
    Hold,
    NonRetryableError,
    RunStopped,
    TaskError,
    TaskReady,
    TaskResult,
)
from cadenza_events.tracing import child_span
from cadenza_runtime import Resources, labelled
from cadenza_state import create_blocking_redis, utcnow
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from . import metrics
from .claimcheck import ClaimCheck
from .dispatches import DispatchCheck, DispatchNotCommitted
from .errors import InvalidOutputError, ParamsUnavailableError, StoreUnavailable, to_task_error
from .execution import Outcome, Progress, run_with_retries
from .kinds import ExecutorRegistry, TaskCall
from .lease import Claim, Presence, StopReason, TaskClaims
from .reporting import Reporter
from .settings import WorkerSettings
from .store_outages import guard_hot, guard_objects, guard_sessions, platform_calls
from .tools import ToolContext

log = logging.getLogger("cadenza.worker")
tracer = trace.get_tracer("cadenza.worker")

ResultStatus = Literal["succeeded", "failed", "cancelled", "awaiting_approval", "in_doubt"]

_CANCELLED_ERROR = TaskError(code="cancelled", message="the run was cancelled", retryable=False)


class TaskHandler:
    def __init__(
        self, resources: Resources, settings: WorkerSettings, executors: ExecutorRegistry
    ) -> None:
        self._resources = resources
        self._settings = settings
        self._executors = executors
        self.claims = TaskClaims(
            resources.hot, settings.worker_id, settings.marker_ttl_s, settings.lease_ttl_s
        )
        self.presence = Presence(
            resources.hot,
            settings.worker_id,
            settings.lease_ttl_s,
            connect=partial(create_blocking_redis, resources.state.settings),
        )
        self._running: set[tuple[str, int]] = set()
        """Attempts this process is handling now (the lease cannot tell our own apart)."""
        self._claims = ClaimCheck(resources.objects, settings.claim_check_bytes)
        self._dispatches = DispatchCheck(resources.sessions, settings.dispatch_wait_s)
        self.reporter = Reporter(
            resources.publisher, settings.worker_id, settings.result_publish_timeout_s
        )
        # What tools get: the same stores, whose outages pause the attempt (store_outages).
        self._tool_hot = guard_hot(resources.hot)
        self._tool_objects = guard_objects(resources.objects)
        self._tool_sessions = guard_sessions(resources.sessions)

    async def handle(self, env: Envelope[Any]) -> None:
        task = env.payload
        if not isinstance(task, TaskReady):
            raise NonRetryableError(
                f"expected a task.ready event, got {env.type}", code="unexpected_event"
            )
        attempt = (task.task_id, task.attempt)
        if attempt in self._running:  # a duplicate delivery to this very process
            metrics.LEASES_CONTENDED.inc()
            return
        self._running.add(attempt)
        try:
            await self._claim_and_run(env, task)
        finally:
            self._running.discard(attempt)

    async def on_control(self, env: Envelope[Any]) -> None:
        """A ``run.control`` broadcast: a stopped run's attempts in flight here stop now."""
        stop = env.payload
        if not isinstance(stop, RunStopped):
            log.debug("ignoring control event %s", env.type)
            return
        stopped = self.presence.stop_run(stop.run_id)
        trace.get_current_span().set_attribute("cadenza.tasks_stopped", stopped)
        if stopped:
            log.info(
                "run %s %s: stopped %d attempt(s) in flight", stop.run_id, stop.status, stopped
            )

    async def _claim_and_run(self, env: Envelope[Any], task: TaskReady) -> None:
        await self.presence.ensure_started()  # our heartbeat covers the lease we take
        claim = await self.claims.claim(task.task_id, task.attempt, task.run_id)
        if claim in (Claim.STARTED, Claim.RESUMED) and self.presence.run_stopped(task.run_id):
            claim = Claim.CANCELLED  # the stop was heard before its Redis marker was set
        if claim is Claim.DONE:
            metrics.SKIPPED.labels("done").inc()
            return
        if claim is Claim.HELD:
            metrics.LEASES_CONTENDED.inc()
            log.debug("%s#%d is running elsewhere; ack", task.task_id, task.attempt)
            return
        finished = False
        try:
            finished = await self._run(env, task, claim)
        finally:
            if not finished:
                await self.claims.release(task.task_id, task.attempt)

    async def _run(self, env: Envelope[Any], task: TaskReady, claim: Claim) -> bool:
        """Run a claimed attempt; True once its result is out (the lease went with it)."""
        label = self._executors.label(task)
        if claim is Claim.CANCELLED:
            await self._report(env, task, Outcome("cancelled", 0), None, label, 0.0)
            return True
        started_at = utcnow()
        if claim is Claim.STARTED:
            latency = (started_at - task.ready_at).total_seconds()
            labelled(metrics.DISPATCH_LATENCY, task.kind, label).observe(max(0.0, latency))
        self.reporter.event(
            env, task, "task.started", "running", {"resumed": claim is Claim.RESUMED}
        )

        def attributes() -> dict[str, AttributeValue]:
            return {
                "cadenza.run_id": task.run_id,
                "cadenza.task_id": task.task_id,
                "cadenza.node_id": task.node_id,
                "cadenza.attempt": task.attempt,
                "cadenza.task.kind": task.kind,
                "cadenza.tool.name": task.name,
                "cadenza.tenant_id": env.tenant_id,
            }

        with child_span(tracer, f"task {task.name}", attributes) as span:
            clock = time.perf_counter()
            metrics.IN_FLIGHT.inc()
            try:
                outcome = await self._execute_watched(env, task, label)
            except StoreUnavailable as exc:  # paused, no try spent: the bus runs it again
                metrics.STORE_OUTAGES.labels(exc.store).inc()
                span.add_event("store.unavailable", {"cadenza.store": exc.store})
                raise
            except DispatchNotCommitted:  # given up before any effect: no result
                span.set_attribute("cadenza.task.status", "dispatch_not_committed")
                self._released(env, task, "dispatch_not_committed")
                return False
            finally:
                metrics.IN_FLIGHT.dec()
            span.set_attribute("cadenza.task.status", outcome.status if outcome else "abandoned")
            if outcome is None:
                self._released(env, task, "lease_lost")
                return False  # lease lost: whoever holds it now reports this task
            span.set_attribute("cadenza.task.tries", outcome.tries)
            if outcome.error is not None:
                span.set_attribute("cadenza.error.code", outcome.error.code)
            await self._report(env, task, outcome, started_at, label, time.perf_counter() - clock)
            return True

    def _released(self, env: Envelope[Any], task: TaskReady, reason: str) -> None:
        """The timeline's end of an attempt this worker started and gives up without a
        result (its ``task.started`` would otherwise stay open): ``dispatch_not_committed``
        (the orchestrator never committed it; a committed dispatch is a new delivery) or
        ``lease_lost`` (another worker holds the attempt now and reports it)."""
        self.reporter.event(env, task, "task.released", data={"reason": reason})

    async def _execute_watched(
        self, env: Envelope[Any], task: TaskReady, label: str
    ) -> Outcome | None:
        """Run the attempt in this asyncio task, watched by the presence loop, which cancels
        it when the run is cancelled or the lease is lost (``Watched.reason`` says which).

        Such a stop is told apart from the worker stopping by the reason and by
        ``Task.uncancel`` (another cancellation still pending means the worker is stopping
        too): then the attempt's outcome is reported, or nothing for a lost lease. A stopping
        worker's cancellation goes on up: the unacked task.ready is redelivered and resumed
        (effects replay from the journal). No second asyncio task per attempt: it cost a task,
        a wait and their callbacks on every no-op task."""
        progress = Progress()
        me = asyncio.current_task()
        assert me is not None, "a handler runs in an asyncio task"
        watched = self.presence.watch(
            task.task_id, task.run_id, self.claims.owner(task.attempt), me
        )
        try:
            outcome = await self._execute(env, task, label, progress)
        except asyncio.CancelledError:
            if watched.reason is None or me.uncancel() > 0:
                raise
            if watched.reason is StopReason.CANCELLED:
                return Outcome("cancelled", progress.tries, error=_CANCELLED_ERROR)
            return None
        finally:
            self.presence.unwatch(watched)
        if watched.reason is not None:
            # Stopped as it finished (the tool swallowed the cancellation, or the stop came
            # after its last await): take the stop back and keep the outcome it reached.
            me.uncancel()
        return outcome

    async def _execute(
        self, env: Envelope[Any], task: TaskReady, label: str, progress: Progress
    ) -> Outcome:
        if env.sent_before_commit and self._executors.has_effects(task):
            # Sent before its dispatch's commit (the orchestrator's early dispatch): no
            # effect before the commit (``DispatchCheck``). Any other task.ready was sent
            # after its commit: nothing to read.
            with platform_calls("postgresql"):
                await self._dispatches.committed(task.task_id, task.attempt)
        try:
            params = await self._claims.load_params(task)
        except ParamsUnavailableError as exc:
            return Outcome("failed", 0, error=to_task_error(exc))

        async def try_once(number: int) -> Any:
            labelled(metrics.TRIES, label).inc()
            ctx = ToolContext(
                tenant_id=env.tenant_id,
                run_id=task.run_id,
                task_id=task.task_id,
                node_id=task.node_id,
                attempt=task.attempt,
                try_number=number,
                hot=self._tool_hot,
                objects=self._tool_objects,
                sessions=self._tool_sessions,
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
        status: ResultStatus = outcome.status
        output, output_ref, error = outcome.output, None, outcome.error
        handoff = output if isinstance(output, Handoff) else None
        hold = output if isinstance(output, Hold) else None
        if handoff is not None:
            output = None  # the task goes on with another agent; it has no output yet
        elif hold is not None:
            # A tool call waits for a person: the lease goes back, no worker waits with it.
            status = "awaiting_approval" if hold.kind == "approval" else "in_doubt"
            output = None
        elif status == "succeeded":
            try:
                output, output_ref = await self._claims.store_output(task, output)
            except InvalidOutputError as exc:
                status, output, error = "failed", None, to_task_error(exc)
        if status == "cancelled" and error is None:
            error = _CANCELLED_ERROR
        result = TaskResult(
            hold=hold,
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
        # Queued before the result is published: it rides in the result (Reporter.result).
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
        await self.reporter.result(env, task, result)
        try:
            await self.claims.finish(task.task_id, task.attempt, status)
        except Exception:  # the result is out; a redelivery would only repeat it (deduped)
            log.warning("could not mark %s#%d done", task.task_id, task.attempt, exc_info=True)
        labelled(metrics.TASKS, task.kind, label, status).inc()
        labelled(metrics.TASK_DURATION, task.kind, label, status).observe(duration_s)
