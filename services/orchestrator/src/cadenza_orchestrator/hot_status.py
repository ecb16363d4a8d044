"""The Redis side of a transition: the hot run status and the run-cancelled marker.

Written after the commit (PostgreSQL is the truth; Redis is a cache for polling and live
views), so a crash in between can leave a counter short until the run's next change; the
final counts are recomputed exactly when the run finishes. Each function queues its
commands on a pipeline: a batch's runs go to Redis in one round trip, and the batches of a
few milliseconds together (``HotStatusWrites``).
"""

from __future__ import annotations

import logging
from typing import Any

from cadenza_runtime import keys
from cadenza_runtime.linger import Linger
from cadenza_state import HotState, utcnow

from . import metrics

log = logging.getLogger("cadenza.orchestrator")


def set_counts(
    hot: HotState,
    pipe: Any,
    run_id: str,
    *,
    tenant_id: str,
    status: str,
    total: int,
    done: int,
    ttl_s: int,
) -> None:
    """Absolute status (at planning and when the run finishes)."""
    fields: dict[str, str | int | float] = {
        "tenant_id": tenant_id,  # the gateway serves the hash only to this tenant
        "status": status,
        "tasks_total": total,
        "tasks_done": done,
        "updated_at": utcnow().isoformat(),
    }
    hot.stage_run_status(pipe, run_id, fields, {}, ttl_s)


def add_counts(
    hot: HotState, pipe: Any, run_id: str, *, status: str, added: int, done: int, ttl_s: int
) -> None:
    """Incremental status after a result: O(1) whatever the run's size."""
    hot.stage_run_status(
        pipe,
        run_id,
        {"status": status, "updated_at": utcnow().isoformat()},
        {"tasks_total": added, "tasks_done": done},
        ttl_s,
    )


def mark_cancelled(hot: HotState, pipe: Any, run_id: str, *, ttl_s: int) -> None:
    """Tell workers running tasks of a failed run to stop (they watch this key)."""
    pipe.set(hot.key(keys.run_cancelled(run_id)), "1", ex=ttl_s)


class HotStatusWrites:
    """The hot statuses of successive commits, sent to Redis together.

    A commit's commands are staged on the current pipeline (``pipeline()``, in commit
    order: its caller stages its turn) and, with a ``linger_s``, wait up to that long for
    the commits after it: a chain of quick steps, or a loaded orchestrator, costs Redis and
    this process one round trip per linger instead of one per commit. One pipeline is out
    at a time, so they arrive in the order staged. With no linger, ``staged`` sends at once
    and waits for the reply (the caller's turn ends with it). A failed send is logged: the
    database holds the truth, the next change of each run (its final counts) repairs it."""

    def __init__(self, hot: HotState, linger_s: float) -> None:
        self._hot = hot
        self.linger_s = linger_s
        self._pipe: Any = None
        self._commits = 0
        """Commits staged on ``_pipe``."""
        self._linger = Linger(
            linger_s, lambda: self._pipe is not None, self._send, "hot-status-linger"
        )

    def pipeline(self) -> Any:
        """The pipeline a commit stages its commands on (then calls ``staged``)."""
        if self._pipe is None:
            self._pipe = self._hot.redis.pipeline(transaction=False)
        return self._pipe

    async def staged(self) -> None:
        """A commit's commands are all on ``pipeline()``: sent now (no linger, awaited) or
        with the next lingering send."""
        self._commits += 1
        if self.linger_s <= 0:
            await self._send()
        else:
            self._linger.poke()

    async def flush(self) -> None:
        """Send what is staged now and wait for it (a settle, a stop)."""
        await self._linger.drain()

    async def _send(self) -> None:
        pipe, self._pipe = self._pipe, None
        commits, self._commits = self._commits, 0
        if pipe is None:
            return
        metrics.HOT_STATUS_SENDS.inc()
        metrics.HOT_STATUS_COMMITS.inc(commits)
        try:
            async with pipe:
                await pipe.execute()
        except Exception:
            log.exception(
                "hot status of %d commit(s) not updated (the database is up to date)", commits
            )
