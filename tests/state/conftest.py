"""Adapter fixtures, each parametrized over the real service and its dev substitute.

Real-service params are isolated per test (a fresh PostgreSQL schema, Redis key prefix or
MinIO bucket named after ``unique_id``) and cleaned up afterwards. Connection addresses come
from ``StateSettings`` (``CADENZA_*`` env), whose defaults are the `cadenza infra up` ports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cadenza_state import (
    HotState,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StateSettings,
    create_engine,
    migrate,
    session_factory,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support.cleanup import drop_bucket, drop_schema, prefixed_hot_state

Eventually = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]

DB_PARAMS = [
    pytest.param("sqlite", marks=pytest.mark.unit),
    pytest.param("postgres", marks=pytest.mark.integration),
]
HOT_PARAMS = [
    pytest.param("memory", marks=pytest.mark.unit),
    pytest.param("redis", marks=pytest.mark.integration),
]
OBJECT_PARAMS = [
    pytest.param("local", marks=pytest.mark.unit),
    pytest.param("s3", marks=pytest.mark.integration),
]


@pytest.fixture
def eventually() -> Eventually:
    """``await eventually(check)``: retry an async check until it stops raising AssertionError."""

    async def run(check: Callable[[], Awaitable[Any]], within: float = 5.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            try:
                return await check()
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)

    return run


# -- database ------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=DB_PARAMS, loop_scope="function")
async def db_settings(
    request: pytest.FixtureRequest,
    require_services: Callable[..., None],
    unique_id: str,
    tmp_path: Path,
) -> AsyncIterator[StateSettings]:
    """Settings for an empty database: a fresh PostgreSQL schema (dropped afterwards) or a
    SQLite file."""
    if request.param == "sqlite":
        yield StateSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
        return
    require_services("postgres")
    settings = StateSettings(database_schema=unique_id)
    assert not settings.is_sqlite, "CADENZA_DATABASE_URL must point at PostgreSQL"
    try:
        yield settings
    finally:
        await drop_schema(settings)


@pytest_asyncio.fixture(loop_scope="function")
async def engine(db_settings: StateSettings) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on ``db_settings``."""
    eng = create_engine(db_settings)
    try:
        await migrate(eng)
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


# -- redis ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=HOT_PARAMS, loop_scope="function")
async def hot(
    request: pytest.FixtureRequest, require_services: Callable[..., None], unique_id: str
) -> AsyncIterator[HotState]:
    """HotState on real Redis or fakeredis, under a key prefix unique to the test."""
    if request.param == "redis":
        require_services("redis")
    async with prefixed_hot_state(request.param, f"test:{unique_id}:") as state:
        yield state


# -- objects -------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=OBJECT_PARAMS, loop_scope="function")
async def store(
    request: pytest.FixtureRequest,
    require_services: Callable[..., None],
    unique_id: str,
    tmp_path: Path,
) -> AsyncIterator[ObjectStore]:
    """An object store with its bucket created: a unique MinIO bucket, or a tmp folder."""
    if request.param == "local":
        local = LocalObjectStore(tmp_path / "objects")
        await local.ensure_bucket()
        yield local
        return
    require_services("minio")
    s3 = S3ObjectStore.from_settings(StateSettings(object_store="s3", s3_bucket=unique_id))
    await s3.ensure_bucket()
    try:
        yield s3
    finally:
        await asyncio.to_thread(drop_bucket, s3)
