"""What the worker tells the rest of the system: ONE `task.result` per attempt (published
directly — the worker has no database transaction to stage it in; the orchestrator dedupes
duplicates) and best-effort `run.events` for the run's timeline."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cadenza_events import (
    Envelope,
    Publisher,
    RunEvent,
    TaskReady,
    TaskResult,
    Topic,
    Unavailable,
)
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

log = logging.getLogger("cadenza.worker.reporting")

SOURCE = "/cadenza/agent-worker"


def _not_cancelled(exc: BaseException) -> bool:
    return not isinstance(exc, asyncio.CancelledError)


class Reporter:
    def __init__(self, publisher: Publisher, worker_id: str, publish_timeout_s: float) -> None:
        self._publisher = publisher
        self._worker_id = worker_id
        self._publish_timeout_s = publish_timeout_s
        self._pending: set[asyncio.Task[None]] = set()

    def _envelope(self, incoming: Envelope[Any], task: TaskReady, payload: Any) -> Envelope[Any]:
        return Envelope(
            payload=payload,
            source=SOURCE,
            tenant_id=incoming.tenant_id,
            plan_id=task.run_id,
            task_id=task.task_id,
            attempt=task.attempt,
            subject=task.node_id,
        )

    async def result(self, incoming: Envelope[Any], task: TaskReady, result: TaskResult) -> None:
        """Publish the attempt's result, retrying a while (a broker restart must only delay
        it); after that the handler fails and the bus redelivers the task.ready."""
        env = self._envelope(incoming, task, result)
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_delay(self._publish_timeout_s),
                wait=wait_random_exponential(multiplier=0.1, max=2.0),
                retry=retry_if_exception(_not_cancelled),
                reraise=True,
            ):
                with attempt:
                    await self._publisher.publish(Topic.TASK_RESULT, env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The broker is away: the task.ready waits (never dead-lettered) and is run again.
            raise Unavailable(
                f"could not publish the result of {task.task_id}#{task.attempt}: {exc}",
                code="result_publish_failed",
            ) from exc

    def event(
        self,
        incoming: Envelope[Any],
        task: TaskReady,
        kind: str,
        status: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Publish a run event in the background: the timeline must not slow the task."""
        payload = RunEvent(
            run_id=task.run_id,
            kind=kind,
            task_id=task.task_id,
            node_id=task.node_id,
            status=status,
            data={"attempt": task.attempt, "worker_id": self._worker_id, **(data or {})},
        )
        job = asyncio.create_task(self._publish_event(self._envelope(incoming, task, payload)))
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def _publish_event(self, env: Envelope[Any]) -> None:
        try:
            await self._publisher.publish(Topic.RUN_EVENTS, env)
        except Exception:
            log.warning("run event %s of %s lost", env.payload.kind, env.task_id, exc_info=True)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for background events (on stop)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout_s)
