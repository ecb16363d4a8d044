"""Per-tenant and per-credential request rate limits, counted in Redis with ``limits``.

Sliding-window counters shared by every gateway replica (the same Redis, through the
process's own connection pool). Over the limit: ``429 rate-limited`` with ``Retry-After``;
every limited answer carries the ``RateLimit-*`` headers (IETF httpapi draft).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from cadenza_state import HotState
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .principal import Principal
from .problems import RateLimited
from .settings import AuthSettings

WINDOW_S = 60
_HEADERS_KEY = "ratelimit_headers"


@dataclass(frozen=True)
class _Limit:
    name: str  # "tenant" or "credential"
    item: RateLimitItem
    identifiers: tuple[str, ...]


class RateLimiter:
    def __init__(self, settings: AuthSettings, hot: HotState) -> None:
        self.settings = settings
        # The URI is a placeholder: the storage talks through the given connection pool.
        pool: dict[str, Any] = {"connection_pool": hot.redis.connection_pool}
        storage = RedisStorage(
            "async+redis://localhost:6379",
            implementation="redispy",
            key_prefix=f"{hot.prefix}ratelimit",
            **pool,
        )
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    @staticmethod
    def enabled(settings: AuthSettings) -> bool:
        return bool(
            settings.rate_limit_per_minute
            or settings.rate_limit_key_per_minute
            or any(settings.tenant_rate_limits.values())
        )

    def limits_for(self, principal: Principal) -> list[_Limit]:
        s = self.settings
        out = []
        per_tenant = s.tenant_rate_limits.get(principal.tenant, s.rate_limit_per_minute)
        if per_tenant:
            out.append(
                _Limit("tenant", RateLimitItemPerMinute(per_tenant), ("tenant", principal.tenant))
            )
        if s.rate_limit_key_per_minute:
            out.append(
                _Limit(
                    "credential",
                    RateLimitItemPerMinute(s.rate_limit_key_per_minute),
                    ("credential", principal.tenant, principal.subject),
                )
            )
        return out

    async def check(self, principal: Principal, scope: Scope) -> None:
        """Count one request of ``principal``; 429 when a limit is spent."""
        tightest: tuple[int, int, int] | None = None  # (remaining, limit, reset_s)
        for limit in self.limits_for(principal):
            allowed = await self.limiter.hit(limit.item, *limit.identifiers)
            stats = await self.limiter.get_window_stats(limit.item, *limit.identifiers)
            reset_s = max(1, math.ceil(stats.reset_time - time.time()))
            if not allowed:
                headers = _headers(limit.item.amount, 0, reset_s)
                raise RateLimited(
                    f"the {limit.name} rate limit of {limit.item.amount} requests per minute "
                    f"is spent; retry in {reset_s} s",
                    headers={"Retry-After": str(reset_s), **headers},
                    limit=limit.item.amount,
                    window_s=WINDOW_S,
                    limited=limit.name,
                )
            if tightest is None or stats.remaining < tightest[0]:
                tightest = (stats.remaining, limit.item.amount, reset_s)
        if tightest is not None:
            remaining, amount, reset_s = tightest
            scope.setdefault("state", {})[_HEADERS_KEY] = _headers(amount, remaining, reset_s)


def _headers(limit: int, remaining: int, reset_s: int) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(max(0, remaining)),
        "RateLimit-Reset": str(reset_s),
        "RateLimit-Policy": f"{limit};w={WINDOW_S}",
    }


class RateLimitHeadersMiddleware:
    """Adds the ``RateLimit-*`` headers the auth dependency computed to the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = scope.get("state", {}).get(_HEADERS_KEY)
                if headers:
                    mutable = MutableHeaders(scope=message)
                    for name, value in headers.items():
                        mutable.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
