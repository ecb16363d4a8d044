"""Engine, sessions and start-up migrations for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from cadenza_state.settings import StateSettings
from cadenza_state.types import dumps_in_jsonb_key_order

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Serialises concurrent start-ups (several services migrating the same database at once).
_MIGRATE_LOCK_ID = int.from_bytes(hashlib.sha256(b"cadenza_state.migrate").digest()[:7], "big")


def create_engine(settings: StateSettings, **engine_kwargs: Any) -> AsyncEngine:
    """An async engine for ``settings.database_url``.

    PostgreSQL with ``database_schema``: every connection gets ``search_path=<schema>`` and
    the schema is created on connect if missing, so the same unqualified models and
    migrations work in any schema. SQLite: foreign keys on, WAL, and every transaction is
    ``BEGIN IMMEDIATE`` so read-then-write handlers serialise instead of failing with
    "database is locked" when they upgrade to a write.
    """
    url = make_url(settings.database_url)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "postgresql":
        kwargs["pool_size"] = settings.database_pool_size
        kwargs["max_overflow"] = settings.database_max_overflow
        kwargs["json_serializer"] = dumps_in_jsonb_key_order
        if settings.database_schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": settings.database_schema}}
    elif backend == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    kwargs.update(engine_kwargs)
    engine = _create_async_engine(url, **kwargs)
    if backend == "postgresql":
        _install_liveness_check(engine)
        if settings.database_schema:
            _install_schema_hook(engine, settings.database_schema)
    elif backend == "sqlite":
        _install_sqlite_hooks(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (handlers read them afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database (schema) behind ``engine`` to the newest Alembic revision."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def alembic_config(connection: Connection | None = None) -> Config:
    """A programmatic Alembic config for the packaged migrations (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the surrounding transaction ends; PostgreSQL DDL is transactional, so
        # a waiting migrator then finds the database already at head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATE_LOCK_ID})
    command.upgrade(alembic_config(connection), "head")


def _install_liveness_check(engine: AsyncEngine) -> None:
    """Discard a pooled connection the server closed (a restart, an idle timeout) before
    it is handed out, without a round trip.

    SQLAlchemy's ``pool_pre_ping`` on asyncpg costs three (BEGIN, a query, ROLLBACK) per
    checkout — about a third of the orchestrator's statements. A server that goes away
    closes its sockets, and asyncpg marks the connection closed as soon as the event loop
    reads that, so a local check catches the same restarts; a connection that dies without
    a word fails its first statement instead, the pool is invalidated, and the caller's
    outage retry (``cadenza_runtime.is_outage``) runs it again on a fresh one."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")


def _install_schema_hook(engine: AsyncEngine, schema: str) -> None:
    async def ensure(conn: Any) -> None:
        # Check first: CREATE SCHEMA IF NOT EXISTS still needs CREATE privilege on the
        # database, which a production role using a pre-made schema may lack.
        if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            return
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        except Exception as exc:  # a concurrent connection created it first
            if getattr(exc, "sqlstate", None) not in {"42P06", "23505"}:
                raise

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(ensure)


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so BEGIN below is what runs.
        dbapi_connection.isolation_level = None
        dbapi_connection.run_async(_prepare_sqlite)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def _prepare_sqlite(conn: Any) -> None:
    await conn.execute("PRAGMA busy_timeout=30000")
    await conn.execute("PRAGMA foreign_keys=ON")
    # WAL is a property of the file, so only the first connection switches it. Switching
    # needs an exclusive lock and SQLite answers "database is locked" at once, without
    # its busy handler, while another connection of a concurrent start-up holds one:
    # retry with an async sleep so that connection (maybe on this loop) can finish.
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_is_locked),
        wait=wait_exponential(multiplier=0.01, max=2),
        stop=stop_after_delay(10),
        reraise=True,
    ):
        with attempt:
            async with conn.execute("PRAGMA journal_mode") as cursor:
                row = await cursor.fetchone()
            if not (row and str(row[0]).lower() == "wal"):
                await conn.execute("PRAGMA journal_mode=WAL")


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
