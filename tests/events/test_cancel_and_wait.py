"""``cancel_and_wait`` stops a task for good, even one whose first cancellation is lost."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from cadenza_events.tasks import cancel_and_wait

pytestmark = pytest.mark.unit


async def _bounded(task: asyncio.Task[None], nudge_s: float = 0.05) -> None:
    stopping = asyncio.create_task(cancel_and_wait(task, nudge_s=nudge_s))
    done, _ = await asyncio.wait({stopping}, timeout=5)  # a hang fails, not hangs, the test
    assert stopping in done, "cancel_and_wait still waits"
    stopping.result()


async def test_a_task_that_stops_when_cancelled() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await asyncio.sleep(0)
    await _bounded(task)
    assert task.cancelled()


@pytest.mark.parametrize("how", ["swallowed", "turned_into_an_error_and_caught"])
async def test_a_task_whose_first_cancellation_is_lost(how: str) -> None:
    """A loop over a library that loses the cancellation: a plain cancel-then-await waited
    for ever; the second cancellation finds the loop in its own sleep."""
    rounds = 0

    async def library_call() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            if how == "swallowed":
                return
            raise ConnectionError("lost") from None

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            with contextlib.suppress(ConnectionError):  # logged and retried, as a heartbeat
                await library_call()
            await asyncio.sleep(0.5)

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    await _bounded(task)
    assert task.done()
    assert rounds == 1


async def test_the_error_a_task_ended_with_is_raised() -> None:
    async def fails_on_stop() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_stop())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task, nudge_s=0.05)
