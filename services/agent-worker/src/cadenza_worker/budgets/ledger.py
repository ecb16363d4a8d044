"""Budget counters in Redis: reserve an LLM call's worst case against every level that
applies in ONE Lua script (check all, then take from all — never read-then-write), settle
the real usage after the call, and release reservations whose worker vanished.

Per level a hash ``{tokens, micros}`` holds spent + reserved (USD as integer micro-dollars
so Lua adds exactly). A reservation is a hash listing its counters and amounts, indexed in a
sorted set by its expiry; after it is settled or released it stays as a short-lived
tombstone whose ``state`` makes a late settle (or a second reconciler) a no-op.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cadenza_state import HotState

MICROS = 1_000_000
NO_LIMIT = -1
RESERVATIONS = "budget:reservations"  # sorted set: reservation id → expiry (epoch ms)
TOMBSTONE_S = 3600

# KEYS: reservation hash, expiry zset, counter 1..n
# ARGV: id, expiry_ms, reservation_ttl_s, n, ask_tokens, ask_micros, meta, then per level
#       (limit_tokens, limit_micros, counter_ttl_s, seed_tokens, seed_micros); -1 = none.
# Returns {'missing', i...} (counters to seed from PostgreSQL), {'exceeded', i, unit,
# used, limit} or {'ok'}.
_RESERVE = """
local n = tonumber(ARGV[4])
local ask_t, ask_u = tonumber(ARGV[5]), tonumber(ARGV[6])
local missing = {}
for i = 1, n do
  local key, base = KEYS[2 + i], 8 + (i - 1) * 5
  if redis.call('exists', key) == 0 then
    local seed_t = tonumber(ARGV[base + 3])
    if seed_t < 0 then
      table.insert(missing, i)
    else
      redis.call('hset', key, 'tokens', seed_t, 'micros', ARGV[base + 4])
      if tonumber(ARGV[base + 2]) > 0 then redis.call('expire', key, ARGV[base + 2]) end
    end
  end
end
if #missing > 0 then return {'missing', unpack(missing)} end
for i = 1, n do
  local key, base = KEYS[2 + i], 8 + (i - 1) * 5
  local used_t = tonumber(redis.call('hget', key, 'tokens') or '0')
  local used_u = tonumber(redis.call('hget', key, 'micros') or '0')
  local lim_t, lim_u = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
  if lim_t >= 0 and used_t + ask_t > lim_t then
    return {'exceeded', i, 'tokens', used_t, lim_t}
  end
  if lim_u >= 0 and used_u + ask_u > lim_u then
    return {'exceeded', i, 'usd', used_u, lim_u}
  end
end
local counters = {}
for i = 1, n do
  local key = KEYS[2 + i]
  redis.call('hincrby', key, 'tokens', ask_t)
  redis.call('hincrby', key, 'micros', ask_u)
  table.insert(counters, key)
end
redis.call('hset', KEYS[1], 'state', 'open', 'tokens', ask_t, 'micros', ask_u,
  'counters', table.concat(counters, '\\n'), 'meta', ARGV[7])
redis.call('expire', KEYS[1], ARGV[3])
redis.call('zadd', KEYS[2], ARGV[2], ARGV[1])
return {'ok'}
"""

# KEYS: reservation hash, expiry zset, counters. ARGV: id, tokens, micros, closing state
# ('settled' by the worker, 'expired' by the reconciler), tombstone ttl.
# An open reservation is adjusted to the real usage. One the reconciler already released
# ('expired') while its call was still running is charged in full now; a settled one is
# left alone. Returns the state found.
_SETTLE = """
local state = redis.call('hget', KEYS[1], 'state')
if state == 'settled' then return 'settled' end
local dt, du = tonumber(ARGV[2]), tonumber(ARGV[3])
if state == 'open' then
  dt = dt - tonumber(redis.call('hget', KEYS[1], 'tokens'))
  du = du - tonumber(redis.call('hget', KEYS[1], 'micros'))
elseif ARGV[4] ~= 'settled' then
  return state or 'gone'
end
for i = 3, #KEYS do
  if redis.call('exists', KEYS[i]) == 1 then
    redis.call('hincrby', KEYS[i], 'tokens', dt)
    redis.call('hincrby', KEYS[i], 'micros', du)
  end
end
redis.call('hset', KEYS[1], 'state', ARGV[4])
redis.call('expire', KEYS[1], ARGV[5])
redis.call('zrem', KEYS[2], ARGV[1])
return state or 'gone'
"""


@dataclass(frozen=True)
class Level:
    """One budget a call counts against: ``scope`` is task, run, tenant_day or tenant_month."""

    scope: str
    key: str  # Redis counter key (without the prefix)
    max_tokens: int | None
    max_usd: float | None
    ttl_s: int
    on_exceeded: str = "stop"


@dataclass(frozen=True)
class Reservation:
    id: str
    tokens: int
    micros: int
    counters: tuple[str, ...]


@dataclass(frozen=True)
class Refusal:
    """Why a call could not reserve: which level, in which unit, used (spent + reserved by
    calls in flight) and the limit."""

    level: Level
    unit: str
    used: float
    limit: float
    requested: float


Seeder = Callable[[Level], Awaitable[tuple[int, float]]]
"""Spend of a level so far, from the durable ledger (PostgreSQL ``llm_calls``)."""


class BudgetLedger:
    def __init__(self, hot: HotState, *, reservation_ttl_s: float) -> None:
        self.hot = hot
        self.reservation_ttl_s = reservation_ttl_s
        self._reserve = hot.redis.register_script(_RESERVE)
        self._settle = hot.redis.register_script(_SETTLE)

    async def reserve(
        self,
        levels: Sequence[Level],
        tokens: int,
        usd: float,
        seed: Seeder,
        meta: str = "",
    ) -> Reservation | Refusal:
        """Take ``tokens``/``usd`` from every level at once, or from none."""
        rid = uuid.uuid4().hex
        micros = to_micros(usd)
        seeds: dict[int, tuple[int, int]] = {}
        for _ in range(3):  # seeding happens once per counter; a retry only races a peer
            answer = await self._call_reserve(rid, levels, tokens, micros, seeds, meta)
            kind = _text(answer[0])
            if kind == "ok":
                counters = tuple(self.hot.key(level.key) for level in levels)
                return Reservation(rid, tokens, micros, counters)
            if kind == "exceeded":
                level = levels[int(answer[1]) - 1]
                unit, used, limit = _text(answer[2]), int(answer[3]), int(answer[4])
                if unit == "usd":
                    return Refusal(level, unit, used / MICROS, limit / MICROS, usd)
                return Refusal(level, unit, used, limit, tokens)
            for index in answer[1:]:
                level = levels[int(index) - 1]
                spent_tokens, spent_usd = await seed(level)
                seeds[int(index) - 1] = (spent_tokens, to_micros(spent_usd))
        raise RuntimeError("budget counters could not be seeded")  # pragma: no cover

    async def _call_reserve(
        self,
        rid: str,
        levels: Sequence[Level],
        tokens: int,
        micros: int,
        seeds: dict[int, tuple[int, int]],
        meta: str,
    ) -> list[Any]:
        expiry_ms = int((time.time() + self.reservation_ttl_s) * 1000)
        args: list[Any] = [
            rid,
            expiry_ms,
            int(self.reservation_ttl_s) + TOMBSTONE_S,
            len(levels),
            tokens,
            micros,
            meta,
        ]
        for i, level in enumerate(levels):
            seed_tokens, seed_micros = seeds.get(i, (NO_LIMIT, NO_LIMIT))
            args += [
                NO_LIMIT if level.max_tokens is None else level.max_tokens,
                NO_LIMIT if level.max_usd is None else to_micros(level.max_usd),
                level.ttl_s,
                seed_tokens,
                seed_micros,
            ]
        keys = [self._res_key(rid), self.hot.key(RESERVATIONS)]
        keys += [self.hot.key(level.key) for level in levels]
        return list(await self._reserve(keys=keys, args=args))

    async def settle(self, reservation: Reservation, tokens: int, usd: float) -> str:
        """Charge the real usage and give back the rest of the reservation."""
        return await self._close(reservation.id, reservation.counters, tokens, usd, "settled")

    async def release_expired(self, now_ms: int | None = None, limit: int = 100) -> list[str]:
        """Reservations past their expiry (their worker died or hung): released, so
        nothing stays reserved by a crashed worker. Returns their ids."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        ids = await self.hot.redis.zrangebyscore(
            self.hot.key(RESERVATIONS), "-inf", now_ms, start=0, num=limit
        )
        released = []
        for raw in ids:
            rid = _text(raw)
            counters = await self.hot.redis.hget(self._res_key(rid), "counters")
            keys = tuple(_text(counters).split("\n")) if counters else ()
            if await self._close(rid, keys, 0, 0.0, "expired") == "open":
                released.append(rid)
        return released

    async def open_reservations(self) -> int:
        return int(await self.hot.redis.zcard(self.hot.key(RESERVATIONS)))

    async def used(self, level: Level) -> tuple[int, float]:
        """Spent + reserved on a level (tokens, USD); zeros for an unseeded counter."""
        values = await self.hot.redis.hmget(self.hot.key(level.key), ["tokens", "micros"])
        tokens, micros = (int(v) if v is not None else 0 for v in values)
        return tokens, micros / MICROS

    async def _close(
        self, rid: str, counters: Sequence[str], tokens: int, usd: float, state: str
    ) -> str:
        keys = [self._res_key(rid), self.hot.key(RESERVATIONS), *counters]
        args: list[str | int] = [rid, tokens, to_micros(usd), state, TOMBSTONE_S]
        return _text(await self._settle(keys=keys, args=args))

    def _res_key(self, rid: str) -> str:
        return self.hot.key(f"budget:reservation:{rid}")


def to_micros(usd: float) -> int:
    return round(usd * MICROS)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
