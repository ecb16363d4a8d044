"""Results that come before their run's plan is applied.

A plan batch applied without a lock hands its first ``task.ready`` records to Kafka as its
statement leaves, before the commit (early dispatch, docs/orchestrator.md). In this process
that is harmless: the plan batch holds its runs' turns (``turns.RunTurns``) until the
commit, so a result of those tasks waits for it. But if the orchestrator dies between the
send and the commit, the plan is applied again by whoever owns the partition next, and a
task with no side effect may have run already: its result and the redelivered plan reach
the new owner on two topics, in either order. A result first would find no task row and be
dropped; the plan's dispatch of the same attempt would then find it done at the worker,
and the task would wait for the sweeper's ``result_lost`` (minutes) to run again.

So a result whose task row does not exist while its run is still ``pending`` (the plan not
applied yet) is not dropped: its batch is handed back (``ResultsBeforePlan``), waits until
a plan batch of this process commits (or a short poll), and is applied again. A run whose
plan does not come within ``wait_s`` (dead-lettered, or applied by another process that now
holds its results too) is given up: its results are ignored as unknown, as before, and
later results of that run are not waited for again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import Any

from cadenza_events import RetryableError

from . import metrics

_POLL_S = 0.25
"""Longest wait between two tries of a batch: a plan applied by another process, or by this
one before the batch began to wait, sets no event this process sees."""
_KEPT = 4096
"""Runs remembered (waiting, or given up): past that the oldest are forgotten."""


class ResultsBeforePlan(RetryableError):
    """A results batch holds results of runs whose plan is not applied yet: try it again once
    a plan commits."""

    code = "results_before_plan"

    def __init__(self, run_ids: Collection[str]) -> None:
        super().__init__(f"results of {len(run_ids)} run(s) came before their plan")
        self.run_ids = frozenset(run_ids)


class PlanWaits:
    """Which runs' results wait for their plan, since when, and the plans applied since."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._since: OrderedDict[str, float] = OrderedDict()
        """Runs whose results wait for their plan, by when the first one was seen."""
        self._given_up: OrderedDict[str, None] = OrderedDict()
        self._applied = asyncio.Event()
        """Set when a plan batch commits; a fresh one for the next waiters."""

    def waits(self, run_id: str) -> bool:
        """Whether a result of ``run_id`` that found no task row of its pending run should
        wait for the plan (False: ignore it, the plan did not come in time)."""
        if self.wait_s <= 0 or run_id in self._given_up:
            return False
        now = time.monotonic()
        since = self._since.setdefault(run_id, now)
        if now - since < self.wait_s:
            _trim(self._since)
            return True
        del self._since[run_id]
        self._given_up[run_id] = None
        _trim(self._given_up)
        metrics.RESULTS_BEFORE_PLAN.labels("given_up").inc()
        return False

    def applied(self, run_ids: Iterable[str]) -> None:
        """A plan batch of these runs committed (planned, or found them planned or ended):
        their results stop waiting, and every waiting batch tries again."""
        for run_id in run_ids:
            self._since.pop(run_id, None)
        self._applied.set()
        self._applied = asyncio.Event()

    async def wait(self) -> None:
        """Until the next plan batch commits, or a short poll passes."""
        metrics.RESULTS_BEFORE_PLAN.labels("waited").inc()
        applied = self._applied
        try:
            async with asyncio.timeout(_POLL_S):
                await applied.wait()
        except TimeoutError:
            pass


def _trim(kept: OrderedDict[str, Any]) -> None:
    while len(kept) > _KEPT:
        kept.popitem(last=False)
