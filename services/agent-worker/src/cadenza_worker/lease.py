"""Who runs a task attempt, and whether its worker is alive — in Redis, two script calls per
task (the calls of one turn of the event loop share one pipeline: ``ScriptBatch``) and one
heartbeat per worker PROCESS (docs/execution.md, Liveness).

- ``claim`` (one Lua call): skip an attempt already done; take the task lease
  ``lease:task:{id}`` (owner ``{worker_id}:{attempt}``; a newer attempt takes it over from an
  older one, whose worker was presumed dead); set the started marker; say whether the run
  was cancelled.
- ``finish`` (one Lua call): the done marker (``{status}:{epoch seconds}``) set, the lease
  released and the started marker dropped together, once the result is published.
- ``Presence``: the worker's ``worker:{id}:alive`` key, renewed every ``ttl/3`` by ONE loop
  for all in-flight tasks; the same beat reads the cancel flags of their runs and their
  leases, and stops a task whose run was cancelled or whose lease another worker took.

Liveness no longer depends on a per-task timer started after the claim: a task is lost only
when its lease holder's process stopped beating, so a busy (even CPU-starved) worker keeps
its tasks as long as its one heartbeat gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import redis as redis_sync
from cadenza_events.tasks import cancel_and_wait
from cadenza_runtime import keys
from cadenza_state import HotState

from . import metrics
from .script_batch import ScriptBatch

log = logging.getLogger("cadenza.worker.lease")

# KEYS: done marker, lease, started marker, run-cancelled flag, this worker's heartbeat.
# ARGV: owner ({worker}:{attempt}), attempt, marker ttl (s), heartbeat ttl (ms).
# The heartbeat is renewed with the claim, so no lease ever names a worker without a fresh
# heartbeat (e.g. just after a Redis outage that outlived the heartbeat's TTL).
_CLAIM = """
if redis.call('exists', KEYS[1]) == 1 then return 'done' end
redis.call('set', KEYS[5], ARGV[1], 'PX', ARGV[4])
local holder = redis.call('get', KEYS[2])
local resumed = redis.call('exists', KEYS[3])
if holder then
  if holder ~= ARGV[1] then
    local held = tonumber(string.match(holder, ':(%d+)$') or '0')
    if held >= tonumber(ARGV[2]) then return 'held' end
  end
end
redis.call('set', KEYS[2], ARGV[1], 'EX', ARGV[3])
redis.call('set', KEYS[3], ARGV[1], 'EX', ARGV[3])
if redis.call('exists', KEYS[4]) == 1 then return 'cancelled' end
if resumed == 1 then return 'resumed' end
return 'started'
"""
# KEYS: done marker, lease, started marker. ARGV: owner, done value, marker ttl (s).
# The started marker goes: every reader (the claim, the sweeper) looks at the done marker
# first, so a finished attempt keeps ONE key for the marker's lifetime, not two (at the
# default day-long TTL, the hot store's largest share of memory).
_FINISH = """
redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('del', KEYS[3])
if redis.call('get', KEYS[2]) == ARGV[1] then redis.call('del', KEYS[2]) end
return 1
"""
# KEYS: lease. ARGV: owner.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


_STOPPED_RUN_MEMORY_S = 60.0
"""How long a ``run.stopped`` broadcast is remembered for claims (far longer than the
moment between the orchestrator's commit and its Redis marker)."""
_STOPPED_RUNS_KEPT = 1_000
"""Past this many remembered runs, the ones older than the memory are forgotten."""


class Claim(StrEnum):
    STARTED = "started"
    """The lease is ours: run the attempt."""
    RESUMED = "resumed"
    """This attempt was started before (by us or a worker that stopped mid-task): run it
    again; effects replay from the journal."""
    CANCELLED = "cancelled"
    """The run was cancelled: report ``cancelled`` without running."""
    DONE = "done"
    """Its result was published already: a redelivered ``task.ready``."""
    HELD = "held"
    """Another worker holds this attempt (or a newer one)."""


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    """The run was cancelled: report `cancelled`."""
    LEASE_LOST = "lease_lost"
    """Another worker holds the lease now (we were presumed dead): abandon quietly."""


def done_value(status: str, at: float | None = None) -> str:
    """The done marker's value: the status and when (the sweeper ages markers by it)."""
    return f"{status}:{int(at if at is not None else time.time())}"


class TaskClaims:
    """The per-task Redis protocol: one call to claim, one to finish."""

    def __init__(
        self, hot: HotState, worker_id: str, marker_ttl_s: int, heartbeat_ttl_s: float
    ) -> None:
        self._hot = hot
        self.worker_id = worker_id
        self._ttl_s = marker_ttl_s
        self._heartbeat_ttl_ms = max(1, int(heartbeat_ttl_s * 1000))
        self._claim = hot.redis.register_script(_CLAIM)
        self._finish = hot.redis.register_script(_FINISH)
        self._release = hot.redis.register_script(_RELEASE)
        self._batch = ScriptBatch(hot.redis)  # claims and finishes of one loop turn together

    def owner(self, attempt: int) -> str:
        return f"{self.worker_id}:{attempt}"

    async def claim(self, task_id: str, attempt: int, run_id: str) -> Claim:
        k = self._hot.key
        answer = await self._batch.call(
            self._claim,
            [
                k(keys.task_done(task_id, attempt)),
                k(keys.task_lease(task_id)),
                k(keys.task_started(task_id, attempt)),
                k(keys.run_cancelled(run_id)),
                k(keys.worker_alive(self.worker_id)),
            ],
            [self.owner(attempt), attempt, self._ttl_s, self._heartbeat_ttl_ms],
        )
        return Claim(answer.decode() if isinstance(answer, bytes) else str(answer))

    async def finish(self, task_id: str, attempt: int, status: str) -> None:
        k = self._hot.key
        await self._batch.call(
            self._finish,
            [
                k(keys.task_done(task_id, attempt)),
                k(keys.task_lease(task_id)),
                k(keys.task_started(task_id, attempt)),
            ],
            [self.owner(attempt), done_value(status), self._ttl_s],
        )

    async def release(self, task_id: str, attempt: int) -> None:
        """Give the lease back without a result (the task was interrupted): the sweeper then
        sees a started attempt with no holder and dispatches it again at once."""
        try:
            await self._release(
                keys=[self._hot.key(keys.task_lease(task_id))], args=[self.owner(attempt)]
            )
        except Exception:  # the holder's heartbeat stops anyway; never mask the outcome
            log.warning("releasing the lease of %s failed", task_id, exc_info=True)


@dataclass(eq=False)
class Watched:
    """An in-flight attempt the presence loop watches."""

    task_id: str
    run_id: str
    owner: str
    target: asyncio.Task[object]
    reason: StopReason | None = field(default=None)


class Presence:
    """One heartbeat for the whole worker process, and the cancel/lease watch of every
    in-flight attempt.

    Given ``connect`` (a blocking client's factory, called with its socket timeout), the
    heartbeat key is renewed from a THREAD with its own connection: the process is alive as
    long as it runs, even when its event loop is slow — a CPU-starved machine, a model turn
    or a tool hogging the loop — so no live worker's task is ever taken for lost. That holds
    in ``cadenza dev`` too, whose fakeredis server takes a lock around every command: there
    the sweeper shares the worker's loop, and a long stall of that loop used to expire the
    key the loop itself renewed. Without ``connect`` the loop renews it. The watch stays on
    the loop, which is where the tasks it cancels run."""

    def __init__(
        self,
        hot: HotState,
        worker_id: str,
        ttl_s: float,
        connect: Callable[[float], redis_sync.Redis] | None = None,
    ) -> None:
        self._hot = hot
        self.worker_id = worker_id
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self.interval_s = ttl_s / 3
        self._connect = connect
        self._watched: set[Watched] = set()
        self._stopped_runs: dict[str, float] = {}
        """Runs a ``run.stopped`` broadcast named (monotonic time heard), for the claims
        that were under way when it came (the Redis marker follows within moments)."""
        self._loop: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def key(self) -> str:
        return self._hot.key(keys.worker_alive(self.worker_id))

    async def ensure_started(self) -> None:
        """Beat once and keep beating (idempotent; a worker starts it before consuming)."""
        if self._loop is None or self._loop.done():
            await self._beat(alive=True)
            self._loop = asyncio.create_task(self._run(), name=f"presence:{self.worker_id}")
        if self._connect is not None and (self._thread is None or not self._thread.is_alive()):
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._beat_forever,
                args=(self._connect,),
                name=f"heartbeat:{self.worker_id}",
                daemon=True,
            )
            self._thread.start()

    async def stop(self) -> None:
        """Stop beating and say so (the sweeper re-dispatches what is left at once)."""
        loop, self._loop = self._loop, None
        if loop is not None:
            # Cancelled again until it ends (``_run`` also stops itself once it sees it was
            # asked to): a cancellation a library under the beat swallows must not leave
            # stop() waiting for ever.
            await cancel_and_wait(loop, nudge_s=max(1.0, self.interval_s))
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping.set()
            await asyncio.to_thread(thread.join, 5.0)
        with contextlib.suppress(Exception):
            await self._hot.redis.delete(self.key)

    def _beat_forever(self, connect: Callable[[float], redis_sync.Redis]) -> None:
        """The heartbeat thread: SET the key every interval on its own connection."""
        client = connect(max(0.5, self.interval_s))
        try:
            while not self._stopping.wait(self.interval_s):
                try:
                    client.set(self.key, str(time.time()), px=self._ttl_ms)
                except Exception:  # Redis away: the next beat tries again
                    metrics.HEARTBEAT_FAILURES.inc()
                    log.warning("heartbeat of %s failed", self.worker_id, exc_info=True)
        finally:
            client.close()

    def watch(self, task_id: str, run_id: str, owner: str, target: asyncio.Task[object]) -> Watched:
        watched = Watched(task_id, run_id, owner, target)
        self._watched.add(watched)
        return watched

    def unwatch(self, watched: Watched) -> None:
        self._watched.discard(watched)

    def stop_run(self, run_id: str) -> int:
        """The run stopped (a ``run.stopped`` broadcast): stop this process's attempts of it
        now, not at the next beat; returns how many. The run is remembered for a while, so
        a claim that was under way as the broadcast came is stopped too."""
        now = time.monotonic()
        if len(self._stopped_runs) >= _STOPPED_RUNS_KEPT:
            horizon = now - _STOPPED_RUN_MEMORY_S
            self._stopped_runs = {r: t for r, t in self._stopped_runs.items() if t > horizon}
        self._stopped_runs[run_id] = now
        stopped = 0
        for w in list(self._watched):
            if w.run_id == run_id and w.reason is None and not w.target.done():
                self._stop(w, StopReason.CANCELLED)
                stopped += 1
        if stopped:
            metrics.TASKS_STOPPED.labels("broadcast").inc(stopped)
        return stopped

    def run_stopped(self, run_id: str) -> bool:
        """Whether a ``run.stopped`` broadcast named this run lately."""
        heard = self._stopped_runs.get(run_id)
        return heard is not None and time.monotonic() - heard < _STOPPED_RUN_MEMORY_S

    async def _run(self) -> None:
        me = asyncio.current_task()
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis hiccup: keep working; the key may still hold
                if me is None or not me.cancelling():  # else an error made of our stop
                    metrics.HEARTBEAT_FAILURES.inc()
                    log.warning("heartbeat of %s failed", self.worker_id, exc_info=True)
            # Only stop() cancels this task. Once in a full CI run, the cancellation that
            # reached it inside the beat never came out (a library took it as an error or
            # swallowed it) and the loop beat on, "cancelling", while stop() waited.
            if me is not None and me.cancelling():
                raise asyncio.CancelledError

    async def _beat(self, alive: bool | None = None) -> None:
        watched = [w for w in self._watched if not w.target.done()]
        runs = sorted({w.run_id for w in watched})
        k = self._hot.key
        if alive is None:
            alive = self._connect is None  # else the thread keeps the key
        if not alive and not watched:
            return
        async with self._hot.redis.pipeline(transaction=False) as pipe:
            if alive:
                pipe.set(self.key, str(time.time()), px=self._ttl_ms)
            for run_id in runs:
                pipe.exists(k(keys.run_cancelled(run_id)))
            for w in watched:
                pipe.get(k(keys.task_lease(w.task_id)))
            replies = await pipe.execute()
        if alive:
            replies = replies[1:]
        flags = replies[: len(runs)]
        cancelled = {run for run, flag in zip(runs, flags, strict=True) if flag}
        holders = replies[len(runs) :]
        for w, holder in zip(watched, holders, strict=True):
            if w.run_id in cancelled:
                if w.reason is None:  # else a broadcast stopped it already
                    metrics.TASKS_STOPPED.labels("heartbeat").inc()
                self._stop(w, StopReason.CANCELLED)
                continue
            text = holder.decode() if isinstance(holder, bytes) else holder
            if text is not None and text != w.owner:
                metrics.LEASES_LOST.inc()
                log.warning("lost the lease of %s to %s: abandoning the task", w.task_id, text)
                self._stop(w, StopReason.LEASE_LOST)

    @staticmethod
    def _stop(watched: Watched, reason: StopReason) -> None:
        watched.reason = reason
        watched.target.cancel()
