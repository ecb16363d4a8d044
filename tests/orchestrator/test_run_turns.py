"""``RunTurns``: this process's writers of a run take turns, all or nothing."""

from __future__ import annotations

import asyncio

import pytest
from cadenza_orchestrator import metrics
from cadenza_orchestrator.turns import RunTurns
from support import assert_eventually

pytestmark = pytest.mark.unit


def waits(writer: str) -> float:
    return float(metrics.RUN_TURN_WAITS.labels(writer)._value.get())


async def test_writers_of_other_runs_do_not_wait() -> None:
    turns = RunTurns()
    before = waits("batch")
    async with turns.hold({"r1", "r2"}, "batch"), turns.hold({"r3"}, "batch"):
        assert len(turns) == 3
    assert len(turns) == 0
    assert waits("batch") == before


async def test_a_writer_of_a_held_run_waits_for_its_turn() -> None:
    turns = RunTurns()
    order: list[str] = []
    release = asyncio.Event()
    before = waits("sweep")

    async def first() -> None:
        async with turns.hold({"r1", "r2"}, "batch"):
            order.append("first in")
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with turns.hold({"r2"}, "sweep"):
            order.append("second in")

    one = asyncio.create_task(first())
    await assert_eventually(lambda: order == ["first in"])
    two = asyncio.create_task(second())
    await assert_eventually(lambda: waits("sweep") == before + 1)
    assert order == ["first in"]
    release.set()
    await asyncio.gather(one, two)
    assert order == ["first in", "first out", "second in"]
    assert len(turns) == 0


async def test_all_or_nothing_a_waiting_writer_holds_none_of_its_runs() -> None:
    """A writer of r1 and r2 waiting for r2 holds no r1 meanwhile: a writer of r1 alone goes
    on (no writer ever holds some runs while it waits for others: no deadlock)."""
    turns = RunTurns()
    release = asyncio.Event()
    entered: list[str] = []

    async def holder() -> None:
        async with turns.hold({"r2"}, "batch"):
            entered.append("r2")
            await release.wait()

    async def both() -> None:
        async with turns.hold({"r1", "r2"}, "batch"):
            entered.append("r1+r2")

    held = asyncio.create_task(holder())
    await assert_eventually(lambda: entered == ["r2"])
    before = waits("batch")
    waiting = asyncio.create_task(both())
    await assert_eventually(lambda: waits("batch") == before + 1)
    async with turns.hold({"r1"}, "sweep"):  # not held by the waiting writer
        entered.append("r1")
    release.set()
    await asyncio.gather(held, waiting)
    assert entered == ["r2", "r1", "r1+r2"]


async def test_a_failing_writer_gives_its_turn_back() -> None:
    turns = RunTurns()
    with pytest.raises(RuntimeError):
        async with turns.hold({"r1"}, "batch"):
            raise RuntimeError("the statement failed")
    assert len(turns) == 0
    async with asyncio.timeout(1), turns.hold({"r1"}, "batch"):
        pass
