"""A platform store away in the middle of an attempt pauses the attempt; it never spends
the task's tries (docs/tools.md, "Platform stores away").

The drivers raise their own connection errors (`cadenza_runtime.is_outage` knows them), and
a tool cannot be trusted to tell them from its own failures: caught as a tool error, a
Redis restart would burn a task's retries and fail its run. So the stores a tool gets in
its `ToolContext` are wrapped (`guard_hot`, `guard_objects`, `guard_sessions`) and the
engine's own calls inside an attempt run under `platform_calls`: either way an outage
leaves as `StoreUnavailable`, which `run_with_retries` lets through to the bus, which holds
the task.ready until the store is back. A tool's own services (an HTTP API, the search
engine) are not wrapped: their outages stay the tool's retryable errors.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import psycopg
import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors
import urllib3.exceptions as http_errors
from cadenza_events import CadenzaError
from cadenza_runtime import causes, is_outage
from cadenza_state import HotState, ObjectStore
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .errors import StoreUnavailable

_STORES: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    ("redis", (redis_errors.RedisError,)),
    ("postgresql", (sa_errors.SQLAlchemyError, psycopg.Error)),
    ("minio", (http_errors.HTTPError,)),
)


def store_outage(exc: BaseException, store: str | None = None) -> StoreUnavailable | None:
    """``exc`` as a `StoreUnavailable` if it says a platform store is away, else None.
    ``store`` names the store when the caller knows it (a refused connect is a bare
    `ConnectionRefusedError`); else the driver's error type tells it.
    Cadenza's own errors are left alone: they already say what they mean."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, CadenzaError):
        return None
    if not is_outage(exc):
        return None
    store = store or next(
        (name for e in causes(exc) for name, types in _STORES if isinstance(e, types)),
        "unknown",
    )
    error = StoreUnavailable(f"{store} unreachable: {type(exc).__name__}: {exc}"[:500])
    error.store = store
    error.__cause__ = exc
    return error


@contextmanager
def platform_calls(store: str | None = None) -> Iterator[None]:
    """Run the engine's own store calls of an attempt: an outage leaves as `StoreUnavailable`.
    Never put a tool's body under it: a tool's own outages are its errors."""
    try:
        yield
    except Exception as exc:
        outage = store_outage(exc, store)
        if outage is None or outage is exc:
            raise
        raise outage from exc


class _GuardedContext:
    """An async context manager whose enter and exit (a session's connect, a transaction's
    commit) are platform calls; the block inside it is not."""

    __slots__ = ("_inner", "_store")

    def __init__(self, inner: Any, store: str) -> None:
        self._inner = inner
        self._store = store

    async def __aenter__(self) -> Any:
        with platform_calls(self._store):
            return _Guarded(await self._inner.__aenter__(), self._store)

    async def __aexit__(self, *exc_info: Any) -> Any:
        with platform_calls(self._store):
            return await self._inner.__aexit__(*exc_info)


class _Guarded:
    """``target`` with every method call made a platform call. Plain attributes pass through
    (``HotState.redis`` is the raw client: a tool that reaches for it is on its own)."""

    __slots__ = ("_store", "_target")

    def __init__(self, target: Any, store: str) -> None:
        self._target = target
        self._store = store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        store = self._store
        if inspect.iscoroutinefunction(value):

            @functools.wraps(value)
            async def call_async(*args: Any, **kwargs: Any) -> Any:
                with platform_calls(store):
                    return await value(*args, **kwargs)

            return call_async
        if callable(value):

            @functools.wraps(value)
            def call(*args: Any, **kwargs: Any) -> Any:
                with platform_calls(store):
                    result = value(*args, **kwargs)
                return _GuardedContext(result, store) if hasattr(result, "__aenter__") else result

            return call
        return value

    async def __aenter__(self) -> Any:
        return await _GuardedContext(self._target, self._store).__aenter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await _GuardedContext(self._target, self._store).__aexit__(*exc_info)


class _GuardedSessions:
    """An `async_sessionmaker` whose sessions are guarded (``sessions()``, ``begin()``)."""

    __slots__ = ("_maker",)

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker

    def __call__(self, **kwargs: Any) -> Any:
        return _Guarded(self._maker(**kwargs), "postgresql")

    def begin(self) -> Any:
        return _GuardedContext(self._maker.begin(), "postgresql")


def guard_hot(hot: HotState) -> HotState:
    return cast(HotState, _Guarded(hot, "redis"))


def guard_objects(objects: ObjectStore) -> ObjectStore:
    return cast(ObjectStore, _Guarded(objects, "minio"))


def guard_sessions(
    sessions: async_sessionmaker[AsyncSession] | None,
) -> async_sessionmaker[AsyncSession] | None:
    return None if sessions is None else cast(Any, _GuardedSessions(sessions))
