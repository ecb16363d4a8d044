"""``Periodic``: the one background loop of the sweeper, retention, scheduler, ledger
retention and budget reconciler — failed passes are counted and logged, never end it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from cadenza_events import Unavailable
from cadenza_runtime.periodic import Periodic
from prometheus_client import CollectorRegistry, Counter, Gauge
from support import assert_eventually

pytestmark = pytest.mark.unit

log = logging.getLogger("test.periodic")


def _metrics() -> tuple[CollectorRegistry, Counter, Gauge]:
    registry = CollectorRegistry()
    passes = Counter("passes_total", "passes", ["outcome"], registry=registry)
    last = Gauge("last_success", "last good pass", registry=registry)
    return registry, passes, last


def _count(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("passes_total", {"outcome": outcome}) or 0.0


async def test_it_repeats_counts_and_stamps_each_good_pass() -> None:
    registry, passes, last = _metrics()
    calls = 0

    async def pass_() -> None:
        nonlocal calls
        calls += 1

    periodic = Periodic("p", pass_, 0.01, log=log, passes=passes, last_success=last)
    periodic.start()
    periodic.start()  # a second start is no second loop
    try:
        await assert_eventually(lambda: calls >= 3, timeout=5)
    finally:
        await periodic.stop()
    assert not periodic.running
    stopped_at = calls
    await asyncio.sleep(0.05)
    assert calls == stopped_at, "a stopped loop ran a pass"
    assert _count(registry, "ok") == calls
    assert _count(registry, "error") == 0
    assert (registry.get_sample_value("last_success") or 0) > 0


async def test_a_failed_pass_is_counted_and_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry, passes, last = _metrics()
    outcomes: list[BaseException | None] = [
        RuntimeError("a bug"),
        Unavailable("the database is away"),
        None,
    ]

    async def pass_() -> None:
        if outcomes:
            error = outcomes.pop(0)
            if error is not None:
                raise error

    periodic = Periodic("the-loop", pass_, 0.01, log=log, passes=passes, last_success=last)
    with caplog.at_level(logging.WARNING, logger="test.periodic"):
        periodic.start()
        try:
            await assert_eventually(lambda: _count(registry, "ok") >= 1, timeout=5)
        finally:
            await periodic.stop()
    assert _count(registry, "error") == 2
    by_level = {(r.levelno, r.getMessage().split(":")[0]) for r in caplog.records}
    # A bug is an error with its traceback; an outage only a warning: it passes by itself.
    assert (logging.ERROR, "the-loop") in by_level
    bug = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert bug.exc_info is not None
    outage = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "waits for a backing store" in outage.getMessage()
    assert outage.exc_info is None


async def test_the_first_pass_waits_an_interval_unless_asked_at_start() -> None:
    ran: list[str] = []

    def recorder(name: str) -> Periodic:
        async def pass_() -> None:
            ran.append(name)

        return Periodic(name, pass_, 30.0, log=log, at_start=name == "eager")

    lazy, eager = recorder("lazy"), recorder("eager")
    lazy.start()
    eager.start()
    try:
        await assert_eventually(lambda: "eager" in ran, timeout=5)
        await asyncio.sleep(0.05)
        assert ran == ["eager"]
    finally:
        await lazy.stop()
        await eager.stop()


async def test_stop_cancels_a_pass_in_progress() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def pass_() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    periodic = Periodic("slow", pass_, 0.01, log=log, at_start=True)
    periodic.start()
    await asyncio.wait_for(started.wait(), 5)
    await periodic.stop()
    assert cancelled.is_set()
    assert not periodic.running


def test_an_interval_must_be_positive() -> None:
    async def pass_() -> None:
        return None

    with pytest.raises(ValueError, match="interval"):
        Periodic("p", pass_, 0, log=log)
