"""Registering the next immutable version of a named document (workflows, agents)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics

T = TypeVar("T")

# Concurrent registrations of one name race for the next version number; each loser
# retries with a fresh max(version). Enough for a burst of simultaneous registrations.
MAX_VERSION_ATTEMPTS = 20


async def insert_version(session: AsyncSession, insert: Callable[[], Awaitable[T]], kind: str) -> T:
    """Run ``insert`` (which adds version max+1) in its own transaction, retrying when a
    concurrent registration took the same number (IntegrityError); ``kind`` labels the
    write-conflict metric."""
    for attempt in range(1, MAX_VERSION_ATTEMPTS + 1):
        try:
            async with session.begin():
                return await insert()
        except IntegrityError:
            metrics.WRITE_CONFLICTS.labels(kind).inc()
            if attempt == MAX_VERSION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises
