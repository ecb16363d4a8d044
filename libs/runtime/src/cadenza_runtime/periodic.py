"""A pass repeated in the background on an interval.

The orchestrator's sweeper and retention, the trigger service's scheduler and ledger
retention and the worker's budget reconciler each had a loop of their own, and each handled
a failed pass a little differently. ``Periodic`` is that loop once, so they all behave alike:

- a failed pass never ends the loop: it is counted, logged, and the next one runs after
  the interval;
- a backing store that is away (``is_outage``) is a warning, because it is expected and
  the pass will run again by itself once the store is back; anything else is an error
  with its traceback, because a person has to look;
- cancelling stops it (``stop``), and a pass in progress is cancelled with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cadenza_events.tasks import cancel_and_wait

from .outages import is_outage


class _Counter(Protocol):
    def labels(self, *values: str) -> Any: ...


class _Gauge(Protocol):
    def set(self, value: float) -> None: ...


class Periodic:
    """``Periodic(name, pass_, interval_s, log=...)``: ``start()`` runs ``await pass_()``
    every ``interval_s`` seconds (the first one after an interval, or at once with
    ``at_start=True``) until ``await stop()``.

    ``passes`` is a counter labelled by outcome (``ok`` or ``error``), ``last_success`` a
    gauge set to the Unix time of the last pass that raised nothing: each service keeps its
    own metric names for them (dashboards and alerts use them)."""

    def __init__(
        self,
        name: str,
        pass_: Callable[[], Awaitable[object]],
        interval_s: float,
        *,
        log: logging.Logger,
        passes: _Counter | None = None,
        last_success: _Gauge | None = None,
        at_start: bool = False,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"{name}: the interval must be positive, got {interval_s}")
        self.name = name
        self._pass = pass_
        self.interval_s = interval_s
        self._log = log
        self._passes = passes
        self._last_success = last_success
        self._at_start = at_start
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop in a task of its own; does nothing if it runs already."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop (and a pass in progress) and wait until it has ended."""
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)

    async def run_once(self) -> bool:
        """One pass, counted and logged as the loop does; True if it raised nothing."""
        try:
            await self._pass()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._count("error")
            if is_outage(exc):
                self._log.warning("%s waits for a backing store: %r", self.name, exc)
            else:
                self._log.exception(
                    "%s: the pass failed; the next one runs in %.3g s", self.name, self.interval_s
                )
            return False
        self._count("ok")
        if self._last_success is not None:
            self._last_success.set(time.time())
        return True

    async def _loop(self) -> None:
        if not self._at_start:
            await asyncio.sleep(self.interval_s)
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    def _count(self, outcome: str) -> None:
        if self._passes is not None:
            self._passes.labels(outcome).inc()
