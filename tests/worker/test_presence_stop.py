"""``Presence.stop`` ends even when the cancellation that reaches its loop inside a beat is
swallowed or turned into an error by a library under it (once in a full CI run the worker
stack's teardown waited for ever on a loop left "cancelling")."""

from __future__ import annotations

import asyncio

import pytest
from cadenza_state import HotState, StateSettings
from cadenza_state.hot import create_redis
from cadenza_worker.lease import Presence

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("swallow", ["returns", "raises"])
async def test_stop_ends_when_the_beat_does_not_let_the_cancellation_out(swallow: str) -> None:
    hot = HotState(create_redis(StateSettings(redis_backend="memory")), "test:presence:")
    presence = Presence(hot, "w-1", ttl_s=0.15)  # a beat every 0.05 s
    await presence.ensure_started()
    entered = asyncio.Event()
    beats = 0

    async def beat_that_keeps_the_cancellation(alive: bool | None = None) -> None:
        nonlocal beats
        beats += 1
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if swallow == "raises":
                raise ConnectionError("the library's own error") from None
            # "returns": swallowed, as if nothing happened

    presence._beat = beat_that_keeps_the_cancellation  # type: ignore[method-assign]
    await asyncio.wait_for(entered.wait(), timeout=2)
    stopping = asyncio.create_task(presence.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)  # a hang fails, not hangs, the test
    assert stopping in done, "stop() still waits for the presence loop"
    stopping.result()
    assert beats == 1  # it stopped at once, not after beating on
    await hot.aclose()
