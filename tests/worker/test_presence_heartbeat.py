"""The worker's heartbeat is renewed from a thread, so a stalled event loop (a model turn, a
tool hogging the loop, a starved CPU) does not make the sweeper take a live worker's task
for lost — in ``cadenza dev`` too, where Redis is an in-process fakeredis server and the
sweeper runs on the worker's own loop. (The real-Redis path is proven end to end by
tests/faults/test_cpu_starved.py.)"""

from __future__ import annotations

import time
import uuid
from functools import partial

import pytest
from cadenza_state import HotState, StateSettings, create_blocking_redis
from cadenza_state.hot import create_redis
from cadenza_worker.lease import Presence

pytestmark = pytest.mark.unit

TTL_S = 0.3
STALL_S = 1.0  # over three TTLs: a key renewed only by the loop expires in it


def stall_the_event_loop() -> None:
    """Hold the loop (and nothing else) as a long model turn or a starved CPU would."""
    time.sleep(STALL_S)


def _dev_state() -> tuple[StateSettings, HotState]:
    settings = StateSettings(redis_backend="memory")
    return settings, HotState(create_redis(settings), f"test:{uuid.uuid4().hex[:8]}:")


async def test_in_cadenza_dev_the_heartbeat_outlives_a_stalled_loop() -> None:
    settings, hot = _dev_state()
    presence = Presence(hot, "w-1", ttl_s=TTL_S, connect=partial(create_blocking_redis, settings))
    await presence.ensure_started()
    stall_the_event_loop()  # only the thread can beat now
    assert await hot.redis.exists(presence.key)
    assert 0 < await hot.redis.pttl(presence.key) <= TTL_S * 1000
    await presence.stop()
    assert not await hot.redis.exists(presence.key)  # a stopped worker says so at once
    await hot.aclose()


async def test_a_heartbeat_renewed_by_the_loop_alone_expires_in_the_same_stall() -> None:
    """The stall above is long enough to matter: without the thread the key is gone."""
    _, hot = _dev_state()
    presence = Presence(hot, "w-1", ttl_s=TTL_S)
    await presence.ensure_started()
    assert await hot.redis.exists(presence.key)
    stall_the_event_loop()
    assert not await hot.redis.exists(presence.key)
    await presence.stop()
    await hot.aclose()
