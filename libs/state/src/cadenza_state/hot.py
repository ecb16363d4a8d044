"""Hot state in Redis: leases, live run status, pub/sub fan-out and counters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.typing import EncodableT

from cadenza_state.settings import StateSettings

# Compare-and-act on the owner in one step: a lease that expired and was re-acquired by
# someone else must not be renewed or deleted by its previous owner.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# The TTL starts with the first increment of a window and is never extended by later ones;
# a key that somehow lost its TTL gets one back instead of counting forever.
_INCR = """
local value = redis.call('incrby', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('pttl', KEYS[1]) < 0 then
  redis.call('expire', KEYS[1], ARGV[2])
end
return value
"""


class HiredisPackingConnection(aioredis.Connection):
    """A TCP connection that writes commands with hiredis' C packer.

    redis-py's asyncio client packs every argument in Python (its sync client already uses
    hiredis for this): a worker's two script calls per task, ten arguments each, cost more
    to pack than the rest of its Redis round trip. The bytes are the same (the tests compare
    both packers); what hiredis does not take (booleans, None, memoryviews) goes to
    redis-py's packer, which raises its own error as before."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        first = args[0]
        # A command name with its subcommand ("SCRIPT LOAD") goes as separate words.
        if isinstance(first, str) and " " in first:
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # its stub: 1-tuples
        except TypeError:
            return super().pack_command(*args)


def create_redis(settings: StateSettings) -> aioredis.Redis:
    """A client for ``settings.redis_url``, or in-process fakeredis when
    ``redis_backend="memory"`` (clients for the same URL share one fake server)."""
    if settings.redis_backend == "memory":
        # Imported here: a service on a real Redis never loads fakeredis (~0.25 s of CPU at
        # every process start on the dev machine).
        from fakeredis import aioredis as fake_aioredis

        return fake_aioredis.FakeRedis.from_url(settings.redis_url)
    if settings.redis_url.startswith("redis://"):  # TLS and unix sockets keep their own class
        return aioredis.Redis.from_url(
            settings.redis_url,
            health_check_interval=30,
            connection_class=HiredisPackingConnection,
        )
    return aioredis.Redis.from_url(settings.redis_url, health_check_interval=30)


def create_blocking_redis(settings: StateSettings, timeout_s: float) -> redis.Redis:
    """A blocking client for the same server as ``create_redis`` — for a thread that must
    reach Redis while the event loop is busy (the worker's heartbeat). With
    ``redis_backend="memory"`` it is a fakeredis client of the same in-process server,
    which takes a lock around every command, so a thread may use it beside the loop."""
    if settings.redis_backend == "memory":
        import fakeredis

        return fakeredis.FakeRedis.from_url(settings.redis_url)
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _messages(pubsub: PubSub) -> AsyncIterator[bytes]:
    while True:
        msg = await pubsub.get_message(timeout=1.0)
        if msg is not None and msg["type"] == "message":
            data = msg["data"]
            yield data if isinstance(data, bytes) else str(data).encode()


class HotState:
    """Typed operations over a Redis client; every key and channel gets ``prefix``."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "cadenza:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._incr = redis.register_script(_INCR)

    @classmethod
    def from_settings(cls, settings: StateSettings) -> HotState:
        return cls(create_redis(settings), settings.redis_key_prefix)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # -- leases ---------------------------------------------------------------------------

    async def acquire_lease(self, key: str, owner: str, ttl_ms: int) -> bool:
        """Take ``key`` for ``owner`` unless someone holds it; expires after ``ttl_ms``."""
        return bool(await self.redis.set(self.key(key), owner, nx=True, px=ttl_ms))

    async def renew_lease(self, key: str, owner: str, ttl_ms: int) -> bool:
        """Extend the lease to ``ttl_ms`` from now, only if ``owner`` still holds it."""
        return bool(await self._renew(keys=[self.key(key)], args=[owner, ttl_ms]))

    async def release_lease(self, key: str, owner: str) -> bool:
        """Drop the lease, only if ``owner`` still holds it."""
        return bool(await self._release(keys=[self.key(key)], args=[owner]))

    async def lease_owner(self, key: str) -> str | None:
        value = await self.redis.get(self.key(key))
        return None if value is None else _text(value)

    # -- run status -----------------------------------------------------------------------

    def _run_key(self, run_id: str) -> str:
        return self.key(f"run:{run_id}:status")

    async def set_run_status(
        self, run_id: str, mapping: Mapping[str, str | int | float], ttl_s: int
    ) -> None:
        """Merge fields into the run's status hash and (re)set its TTL; PostgreSQL stays
        the source of truth, this is a cache for polling and dashboards."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.stage_run_status(pipe, run_id, mapping, {}, ttl_s)
            await pipe.execute()

    async def update_run_status(
        self,
        run_id: str,
        fields: Mapping[str, str | int | float],
        increments: Mapping[str, int],
        ttl_s: int,
    ) -> None:
        """Set ``fields`` and add ``increments`` to counters in one transaction: an O(1)
        update whatever the run's size."""
        async with self.redis.pipeline(transaction=True) as pipe:
            self.stage_run_status(pipe, run_id, fields, increments, ttl_s)
            await pipe.execute()

    def stage_run_status(
        self,
        pipe: Any,
        run_id: str,
        fields: Mapping[str, str | int | float],
        increments: Mapping[str, int],
        ttl_s: int,
    ) -> None:
        """Queue on ``pipe`` what ``update_run_status`` does (a caller writing several
        runs' statuses sends them in one round trip)."""
        key = self._run_key(run_id)
        pipe.hset(key, mapping=dict[Any, Any](fields))
        for name, amount in increments.items():
            if amount:
                pipe.hincrby(key, name, amount)
        pipe.expire(key, ttl_s)

    async def get_run_status(self, run_id: str) -> dict[str, str] | None:
        raw = await self.redis.hgetall(self._run_key(run_id))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    # -- pub/sub --------------------------------------------------------------------------

    async def publish(self, channel: str, message: str | bytes) -> int:
        """Fan a message out to live subscribers (best effort: missed if none listen)."""
        return int(await self.redis.publish(self.key(channel), message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Subscribe on enter (so nothing published afterwards is missed) and yield an
        iterator of message payloads; unsubscribes on exit.

        ``async with hot.subscribe("run:42") as messages: async for m in messages: ...``
        """
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.key(channel))
        try:
            yield _messages(pubsub)
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()

    # -- counters -------------------------------------------------------------------------

    async def incr_counter(self, key: str, amount: int = 1, ttl_s: int | None = None) -> int:
        """Add ``amount`` and return the new total; with ``ttl_s`` the counter is a fixed
        window that expires ``ttl_s`` after its first increment (rate limits, budgets)."""
        return int(await self._incr(keys=[self.key(key)], args=[amount, ttl_s or 0]))

    async def get_counter(self, key: str) -> int:
        value = await self.redis.get(self.key(key))
        return 0 if value is None else int(value)

    async def aclose(self) -> None:
        await self.redis.aclose()
