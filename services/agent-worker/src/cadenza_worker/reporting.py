"""What the worker tells the rest of the system: ONE `task.result` per attempt (published
directly — the worker has no database transaction to stage it in; the orchestrator dedupes
duplicates) and best-effort `run.events` for the run's timeline, gathered for a few
milliseconds and sent as one record per run, so a fan-out's timeline costs the bus a
handful of messages, not two per task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from cadenza_events import (
    Envelope,
    Publisher,
    RunEvent,
    RunEventBatch,
    TaskReady,
    TaskResult,
    Topic,
    Unavailable,
)
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

log = logging.getLogger("cadenza.worker.reporting")

SOURCE = "/cadenza/agent-worker"
TIMELINE_CHUNK = 250
"""Most run events in one `run.events` record (well under Kafka's 1 MB message limit)."""


def _not_cancelled(exc: BaseException) -> bool:
    return not isinstance(exc, asyncio.CancelledError)


@dataclass(slots=True)
class _Queued:
    """A run event waiting for the next flush, unless its attempt's result took it."""

    event: RunEvent
    tenant_id: str
    taken: bool = False


class Reporter:
    def __init__(
        self,
        publisher: Publisher,
        worker_id: str,
        publish_timeout_s: float,
        linger_s: float = 0.02,
    ) -> None:
        self._publisher = publisher
        self._worker_id = worker_id
        self._publish_timeout_s = publish_timeout_s
        self._linger_s = linger_s
        self._queued: dict[str, list[_Queued]] = {}
        """By run, in the order they happened."""
        self._attempts: dict[tuple[str, int], list[_Queued]] = {}
        """The same events by attempt (task id, attempt): what a result takes along. Most
        events leave in their result, so they are kept as payloads, and only those a
        flush sends get an envelope."""
        self._flusher: asyncio.Task[None] | None = None

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
        it); after that the handler fails and the bus redelivers the task.ready.

        The attempt's run events still queued (all of them, for a task shorter than the
        linger) travel inside the result: the orchestrator puts them on the run's timeline
        with its own, so a task costs the bus three records (ready, result, one timeline
        record per orchestrator batch), not four. Lost with the result only if it is never
        published — and then the attempt runs again and reports them again."""
        taken = self._take(task.run_id, task.task_id, task.attempt)
        if taken:
            result = result.model_copy(update={"events": [*result.events, *taken]})
        env = self._envelope(incoming, task, result)
        try:  # the first send on its own: tenacity only when the broker refused it
            await self._publisher.publish(Topic.TASK_RESULT, env)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.info("publishing the result of %s#%d failed; retrying", task.task_id, task.attempt)
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

    def _take(self, run_id: str, task_id: str, attempt: int) -> list[RunEvent]:
        """Take the queued events of one attempt, in order (a flush skips them)."""
        mine = self._attempts.pop((task_id, attempt), None)
        if not mine:
            return []
        for queued in mine:
            queued.taken = True
        return [queued.event for queued in mine]

    def event(
        self,
        incoming: Envelope[Any],
        task: TaskReady,
        kind: str,
        status: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Queue a run event for the timeline; the timeline must not slow the task. Queued
        events leave every ``linger_s`` as ONE record per run (a ``RunEventBatch``)."""
        payload = RunEvent(
            run_id=task.run_id,
            kind=kind,
            task_id=task.task_id,
            node_id=task.node_id,
            status=status,
            data={"attempt": task.attempt, "worker_id": self._worker_id, **(data or {})},
        )
        queued = _Queued(payload, incoming.tenant_id)
        self._queued.setdefault(task.run_id, []).append(queued)
        self._attempts.setdefault((task.task_id, task.attempt), []).append(queued)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        # Events queued while a flush is publishing are sent by the next round of this
        # loop, never left behind waiting for another event to schedule a flusher.
        while self._queued:
            await asyncio.sleep(self._linger_s)  # gather what other tasks report meanwhile
            await self.flush()

    async def flush(self) -> None:
        """Publish the queued events now: one record per run, in the order they happened."""
        queued, self._queued, self._attempts = self._queued, {}, {}
        runs = {
            run_id: left
            for run_id, events in queued.items()
            if (left := [q for q in events if not q.taken])
        }
        if not runs:
            return
        items: list[tuple[Topic, Envelope[Any]]] = [
            (Topic.RUN_EVENTS, _record(events[i : i + TIMELINE_CHUNK]))
            for events in runs.values()
            for i in range(0, len(events), TIMELINE_CHUNK)
        ]
        try:
            await self._publisher.publish_many(items)
        except Exception:
            count = sum(len(events) for events in runs.values())
            log.warning("%d run events lost (the broker refused them)", count, exc_info=True)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Publish what is queued (on stop)."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            await asyncio.wait({flusher}, timeout=timeout_s)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                await self.flush()


def _record(chunk: list[_Queued]) -> Envelope[Any]:
    """One ``run.events`` record: a lone event as itself, several as a ``RunEventBatch``."""
    first = chunk[0]
    event, run_id = first.event, first.event.run_id
    if len(chunk) == 1:
        return Envelope(
            payload=event,
            source=SOURCE,
            tenant_id=first.tenant_id,
            plan_id=run_id,
            task_id=event.task_id,
            attempt=event.data.get("attempt"),
            subject=event.node_id,
        )
    batch = RunEventBatch(run_id=run_id, events=[q.event for q in chunk])
    return Envelope(
        payload=batch, source=SOURCE, tenant_id=first.tenant_id, plan_id=run_id, subject=run_id
    )
