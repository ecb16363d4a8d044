"""HotState conformance on real Redis and fakeredis (unique key prefix per test)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cadenza_state import HotState, StateSettings, create_redis
from support.imports import loaded_after

Eventually = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


async def test_lease_is_exclusive(hot: HotState) -> None:
    assert await hot.acquire_lease("task:1", "worker-a", 10_000)
    assert not await hot.acquire_lease("task:1", "worker-b", 10_000)
    assert await hot.lease_owner("task:1") == "worker-a"
    assert await hot.acquire_lease("task:2", "worker-b", 10_000)


async def test_only_the_owner_renews(hot: HotState) -> None:
    await hot.acquire_lease("task:1", "worker-a", 1_000)
    assert not await hot.renew_lease("task:1", "worker-b", 60_000)
    assert await hot.redis.pttl(hot.key("task:1")) <= 1_000
    assert await hot.renew_lease("task:1", "worker-a", 60_000)
    assert await hot.redis.pttl(hot.key("task:1")) > 1_000
    assert not await hot.renew_lease("task:missing", "worker-a", 60_000)


async def test_only_the_owner_releases(hot: HotState) -> None:
    await hot.acquire_lease("task:1", "worker-a", 10_000)
    assert not await hot.release_lease("task:1", "worker-b")
    assert await hot.lease_owner("task:1") == "worker-a"
    assert await hot.release_lease("task:1", "worker-a")
    assert await hot.lease_owner("task:1") is None
    assert await hot.acquire_lease("task:1", "worker-b", 10_000)


async def test_expired_lease_can_be_taken_and_old_owner_cannot_touch_it(
    hot: HotState, eventually: Eventually
) -> None:
    assert await hot.acquire_lease("task:1", "worker-a", 50)

    async def taken_by_b() -> None:
        assert await hot.acquire_lease("task:1", "worker-b", 10_000)

    await eventually(taken_by_b)
    assert not await hot.renew_lease("task:1", "worker-a", 10_000)
    assert not await hot.release_lease("task:1", "worker-a")
    assert await hot.lease_owner("task:1") == "worker-b"


async def test_run_status_round_trip(hot: HotState) -> None:
    assert await hot.get_run_status("r1") is None
    await hot.set_run_status("r1", {"status": "running", "done": 1}, ttl_s=60)
    await hot.set_run_status("r1", {"done": 2, "cost": 0.5}, ttl_s=60)
    assert await hot.get_run_status("r1") == {"status": "running", "done": "2", "cost": "0.5"}
    assert 0 < await hot.redis.ttl(hot.key("run:r1:status")) <= 60


async def test_run_status_increments_are_atomic_and_relative(hot: HotState) -> None:
    await hot.set_run_status(
        "r2", {"status": "running", "tasks_total": 3, "tasks_done": 0}, ttl_s=60
    )
    await hot.update_run_status(
        "r2", {"status": "running"}, {"tasks_total": 2, "tasks_done": 1}, 60
    )
    await hot.update_run_status("r2", {"status": "succeeded"}, {"tasks_done": 4}, 60)
    status = await hot.get_run_status("r2")
    assert status == {"status": "succeeded", "tasks_total": "5", "tasks_done": "5"}


async def test_publish_reaches_subscribers(hot: HotState) -> None:
    assert await hot.publish("run:r1", b"nobody listens") == 0
    async with hot.subscribe("run:r1") as messages:
        assert await hot.publish("run:r1", b"one") == 1
        await hot.publish("run:r1", "two")
        got = [await asyncio.wait_for(anext(messages), 5) for _ in range(2)]
    assert got == [b"one", b"two"]


async def test_counter_window_ttl_set_once(hot: HotState) -> None:
    assert await hot.get_counter("tokens") == 0
    assert await hot.incr_counter("tokens", 5, ttl_s=60) == 5
    await hot.redis.expire(hot.key("tokens"), 30)  # later increments must not extend it
    assert await hot.incr_counter("tokens", 2, ttl_s=60) == 7
    assert 0 < await hot.redis.ttl(hot.key("tokens")) <= 30
    assert await hot.incr_counter("forever") == 1
    assert await hot.redis.ttl(hot.key("forever")) == -1
    assert await hot.get_counter("tokens") == 7


async def test_prefixes_isolate(hot: HotState) -> None:
    other = HotState(hot.redis, prefix=hot.prefix + "other:")
    assert await hot.acquire_lease("x", "a", 10_000)
    assert await other.acquire_lease("x", "b", 10_000)
    await other.release_lease("x", "b")


@pytest.mark.unit
async def test_memory_clients_for_one_url_share_state(unique_id: str) -> None:
    settings = StateSettings(redis_backend="memory", redis_url="redis://fake-share:6379/0")
    one, two = (
        HotState(create_redis(settings), unique_id),
        HotState(create_redis(settings), unique_id),
    )
    try:
        assert await one.acquire_lease("k", "a", 10_000)
        assert await two.lease_owner("k") == "a"
    finally:
        await one.redis.delete(one.key("k"))
        await one.aclose()
        await two.aclose()


@pytest.mark.unit
@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "0123abcd", 2, "lease:task:r1:n1", b"done:r1", "w1:1", 3, 86_400, 1.5),
        ("SCRIPT LOAD", "return 1"),
        (b"CONFIG GET", b"maxmemory"),
        ("SET", "k", "é" * 3, "EX", 10),
        ("SET", "k", b"\xff\x00", "PX", 2**40),
        ("ZADD", "z", 1e-07, "a", -0.0, "b", float("inf"), "c"),
    ],
)
def test_the_hiredis_packer_writes_the_bytes_redis_py_writes(args: tuple[Any, ...]) -> None:
    from cadenza_state.hot import HiredisPackingConnection
    from redis.asyncio.connection import Connection

    fast, plain = HiredisPackingConnection(), Connection()
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
    twice = [args, args]
    assert b"".join(fast.pack_commands(twice)) == b"".join(plain.pack_commands(twice))


@pytest.mark.unit
@pytest.mark.parametrize("bad", [True, None])
def test_what_hiredis_refuses_gets_redis_pys_own_error(bad: Any) -> None:
    from cadenza_state.hot import HiredisPackingConnection
    from redis.exceptions import DataError

    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", bad)


@pytest.mark.unit
def test_a_tcp_client_packs_with_hiredis() -> None:
    from cadenza_state.hot import HiredisPackingConnection

    client = create_redis(StateSettings(redis_url="redis://127.0.0.1:1/0"))
    assert client.connection_pool.connection_class is HiredisPackingConnection
    tls = create_redis(StateSettings(redis_url="rediss://127.0.0.1:1/0"))
    assert tls.connection_pool.connection_class is not HiredisPackingConnection


def test_a_process_on_a_real_redis_never_loads_fakeredis() -> None:
    """fakeredis is ``cadenza dev``'s in-process Redis: loaded by every service process, it
    cost each ~0.25 s of CPU at its start. It is imported when a memory backend is made."""
    assert loaded_after("import cadenza_state, cadenza_runtime", {"fakeredis"}) == set()
    memory = "import cadenza_state as s\ns.create_redis(s.StateSettings(redis_backend='memory'))"
    assert loaded_after(memory, {"fakeredis"}) == {"fakeredis"}
