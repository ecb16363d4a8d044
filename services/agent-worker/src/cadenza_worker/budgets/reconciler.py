"""Releases reservations whose worker died or hung past their expiry. Every worker runs one;
the settle script makes concurrent reconcilers (and a late settle) safe."""

from __future__ import annotations

import asyncio
import logging

from cadenza_events.tasks import cancel_and_wait

from . import metrics
from .ledger import BudgetLedger

log = logging.getLogger("cadenza.worker.budgets")


class Reconciler:
    def __init__(self, ledger: BudgetLedger, interval_s: float) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="budget-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)

    async def run_once(self) -> list[str]:
        released = await self._ledger.release_expired()
        if released:
            metrics.RELEASED.inc(len(released))
            log.warning("released %d expired budget reservation(s)", len(released))
        return released

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.run_once()
            except Exception:  # Redis away: try again next round, never crash the worker
                log.warning("budget reconciliation failed", exc_info=True)
