"""Whether the orchestrator committed an attempt's dispatch, before the attempt's first
side effect.

The orchestrator may hand a task.ready to Kafka as the statement that dispatches it goes
to PostgreSQL, before the commit (its ``early_dispatch``): a chain's next task starts a
database round trip sooner. A task with no side effect may run at once: if that statement
does not hold, the orchestrator applies its batch again and dispatches the same attempt,
which the worker's claim runs once. But an attempt whose dispatch is never committed
(another orchestrator changed the run meanwhile, during a rebalance) must not have made an
effect that a later dispatch of that same attempt would make again, and the rows an
attempt writes (its effect journal, an agent's calls) name its task row, which must exist.
So before a journaled tool call and before an agent's first turn the attempt waits here
until its task row carries its attempt: at once for a task.ready sent after the commit,
within milliseconds for one sent before. Never: the attempt is given up
(``DispatchNotCommitted``), without a result; a dispatch committed later is a new delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from cadenza_events import CadenzaError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics

log = logging.getLogger("cadenza.worker.dispatches")

_KEPT = 4096
"""Attempts remembered as committed (their later calls read nothing)."""
_ATTEMPT = text("SELECT attempt FROM tasks WHERE id = :id")
_FIRST_WAIT_S = 0.001
_LONGEST_WAIT_S = 0.1


class DispatchNotCommitted(CadenzaError):
    """The attempt's dispatch was not committed within the wait: the attempt is given up
    before any effect, without a result (its lease goes back)."""

    code = "dispatch_not_committed"


class DispatchCheck:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], wait_s: float) -> None:
        self._sessions = sessions
        self.wait_s = wait_s
        self._committed: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def committed(self, task_id: str, attempt: int) -> None:
        """Return once the task's row carries this attempt (or a later one); raise
        ``DispatchNotCommitted`` past ``wait_s``."""
        key = (task_id, attempt)
        if key in self._committed:
            return
        started = time.monotonic()
        pause = _FIRST_WAIT_S
        waited = False
        while True:
            async with self._sessions() as session:
                current = await session.scalar(_ATTEMPT, {"id": task_id})
            if current is not None and current >= attempt:
                break
            if time.monotonic() - started >= self.wait_s:
                metrics.DISPATCH_CHECKS.labels("not_committed").inc()
                log.warning(
                    "%s#%d: its dispatch was not committed within %.1f s; given up",
                    task_id,
                    attempt,
                    self.wait_s,
                )
                raise DispatchNotCommitted(
                    f"{task_id}#{attempt}: dispatch not committed within {self.wait_s:g}s"
                )
            waited = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_WAIT_S)
        metrics.DISPATCH_CHECKS.labels("waited" if waited else "committed").inc()
        self._committed[key] = None
        if len(self._committed) > _KEPT:
            self._committed.popitem(last=False)
