"""One writer of a run at a time in this process.

The orchestrator writes a run's state from three places that run side by side: the
``plan.requested`` consumer's batches (plans and commands), the ``task.result`` consumer's
batches, and the sweeper. A batch applied without a lock is only guarded: another writer of
its run in between makes its statement fail, and the batch is applied again the locked
way. That is enough for the database, not for a batch that sent its ``task.ready`` before
its statement (``early_dispatch``): applied again on what the other writer changed, it may
no longer dispatch the attempt a worker is already running, and a later dispatch of that
same attempt would find it done and get no result. So this process's writers of a run
take turns (``RunTurns.hold``), and the sweeper makes the batches' memory forget a run it
wrote. What can still fail a guard is another orchestrator during a rebalance, which
applies the same events to the same rows, and so dispatches the same attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection

from . import metrics


class RunTurns:
    """Runs being written by this process, and the turn each writer waits for."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Future[None]] = {}
        """Each run being written, with its writer's turn (done when the writer ends)."""

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, run_id: object) -> bool:
        """Whether a writer of this process holds the run now."""
        return run_id in self._held

    @contextlib.asynccontextmanager
    async def hold(self, run_ids: Collection[str], writer: str) -> AsyncIterator[None]:
        """Write these runs once no other writer of this process holds any of them. All or
        nothing (never some held while waiting for the others): no two writers can wait
        for each other."""
        while busy := {turn for r in run_ids if (turn := self._held.get(r)) is not None}:
            metrics.RUN_TURN_WAITS.labels(writer).inc()
            await asyncio.wait(busy)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for run_id in run_ids:
            self._held[run_id] = mine
        try:
            yield
        finally:
            for run_id in run_ids:
                if self._held.get(run_id) is mine:
                    del self._held[run_id]
            mine.set_result(None)
