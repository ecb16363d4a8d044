"""The task lease and its heartbeat, plus the attempt markers kept next to it in Redis.

One executor per task at a time: the lease `lease:task:{id}` (owner `{worker_id}:{attempt}`)
is renewed every ttl/3. The same heartbeat watches `run:{id}:cancelled`, so a cancelled run's
task is stopped within one beat (docs/execution.md, Liveness).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import StrEnum

from cadenza_runtime import keys
from cadenza_state import HotState

from . import metrics

log = logging.getLogger("cadenza.worker.lease")


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    """The run was cancelled: report `cancelled`."""
    LEASE_LOST = "lease_lost"
    """Another worker holds the lease now (we were presumed dead): abandon quietly."""


class Markers:
    """The started/done markers of an attempt and the run's cancel flag."""

    def __init__(self, hot: HotState, ttl_s: int) -> None:
        self._hot = hot
        self._ttl_s = ttl_s

    async def is_done(self, task_id: str, attempt: int) -> bool:
        return bool(await self._hot.redis.exists(self._hot.key(keys.task_done(task_id, attempt))))

    async def mark_started(self, task_id: str, attempt: int, owner: str) -> None:
        key = self._hot.key(keys.task_started(task_id, attempt))
        await self._hot.redis.set(key, owner, ex=self._ttl_s)

    async def mark_done(self, task_id: str, attempt: int, status: str) -> None:
        key = self._hot.key(keys.task_done(task_id, attempt))
        await self._hot.redis.set(key, status, ex=self._ttl_s)

    async def run_cancelled(self, run_id: str) -> bool:
        return bool(await self._hot.redis.exists(self._hot.key(keys.run_cancelled(run_id))))


class Lease:
    def __init__(self, hot: HotState, task_id: str, owner: str, ttl_s: float) -> None:
        self._hot = hot
        self.key = keys.task_lease(task_id)
        self.owner = owner
        self._ttl_ms = max(1, int(ttl_s * 1000))

    async def acquire(self) -> bool:
        return await self._hot.acquire_lease(self.key, self.owner, self._ttl_ms)

    async def renew(self) -> bool:
        """Extend the lease. If it vanished (e.g. Redis restarted empty) take it again; only
        a lease now held by someone else counts as lost."""
        if await self._hot.renew_lease(self.key, self.owner, self._ttl_ms):
            return True
        return await self.acquire()

    async def release(self) -> None:
        try:
            await self._hot.release_lease(self.key, self.owner)
        except Exception:  # it expires on its own; never mask the task's outcome
            log.warning("releasing %s failed", self.key, exc_info=True)


class Heartbeat:
    """Renews the lease and watches for cancellation until ``target`` finishes; cancels
    ``target`` and records why when the run is cancelled or the lease is lost."""

    def __init__(self, lease: Lease, markers: Markers, run_id: str, interval_s: float) -> None:
        self._lease = lease
        self._markers = markers
        self._run_id = run_id
        self._interval_s = interval_s
        self.reason: StopReason | None = None

    async def watch(self, target: asyncio.Task[object]) -> None:
        while not target.done():
            await asyncio.sleep(self._interval_s)
            try:
                if await self._markers.run_cancelled(self._run_id):
                    self._stop(target, StopReason.CANCELLED)
                    return
                if not await self._lease.renew():
                    metrics.LEASES_LOST.inc()
                    log.warning("lost lease %s: abandoning the task", self._lease.key)
                    self._stop(target, StopReason.LEASE_LOST)
                    return
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis hiccup: keep working; the lease may still hold
                log.warning("heartbeat of %s failed", self._lease.key, exc_info=True)

    def _stop(self, target: asyncio.Task[object], reason: StopReason) -> None:
        self.reason = reason
        target.cancel()


async def stop_task(task: asyncio.Task[object]) -> None:
    """Cancel ``task`` and wait until it has really stopped."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
