"""Releases reservations whose worker died or hung past their expiry. Every worker runs one;
the settle script makes concurrent reconcilers (and a late settle) safe."""

from __future__ import annotations

import logging

from cadenza_runtime.periodic import Periodic

from . import metrics
from .ledger import BudgetLedger

log = logging.getLogger("cadenza.worker.budgets")


class Reconciler:
    def __init__(self, ledger: BudgetLedger, interval_s: float) -> None:
        self._ledger = ledger
        # Redis away: the pass runs again next round; it never crashes the worker.
        self._periodic = Periodic("budget-reconciler", self.run_once, interval_s, log=log)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def run_once(self) -> list[str]:
        released = await self._ledger.release_expired()
        if released:
            metrics.RELEASED.inc(len(released))
            log.warning("released %d expired budget reservation(s)", len(released))
        return released
