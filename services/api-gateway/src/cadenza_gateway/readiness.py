"""Dependency checks behind /readyz: the database, Redis and the bus (Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cadenza_events import Bus
from cadenza_runtime import Resources
from sqlalchemy import text

from . import metrics

Check = Callable[[], Awaitable[str]]


async def check_database(resources: Resources) -> str:
    async with resources.sessions() as session:
        await session.execute(text("SELECT 1"))
    return "ok"


async def check_redis(resources: Resources) -> str:
    await resources.hot.redis.ping()
    return "ok"


async def check_bus(bus: Bus) -> str:
    """A real round trip to Kafka (the in-process bus is always reachable)."""
    await bus.ping()
    return "ok"


async def run_checks(resources: Resources, timeout_s: float) -> tuple[bool, dict[str, str]]:
    """Run every check concurrently, each bounded by ``timeout_s``; returns (all ok,
    result by check name)."""
    checks: dict[str, Check] = {
        "database": lambda: check_database(resources),
        "redis": lambda: check_redis(resources),
        "bus": lambda: check_bus(resources.bus),
    }

    async def run(name: str, check: Check) -> tuple[str, str | None]:
        try:
            async with asyncio.timeout(timeout_s):
                return await check(), None
        except TimeoutError:
            return "", f"timed out after {timeout_s}s"
        except Exception as exc:
            return "", f"{type(exc).__name__}: {exc}"[:300]

    results = await asyncio.gather(*(run(n, c) for n, c in checks.items()))
    report: dict[str, str] = {}
    healthy = True
    for name, (ok, error) in zip(checks, results, strict=True):
        if error is None:
            report[name] = ok
        else:
            healthy = False
            report[name] = f"failed: {error}"
            metrics.READINESS_FAILURES.labels(name).inc()
    return healthy, report
