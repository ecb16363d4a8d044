"""The LangGraph checkpointer behind agent loops: PostgreSQL in production, SQLite in dev.

Checkpoints live in the same database (and schema) as the rest of Cadenza's state, so a
worker that dies mid-loop leaves its agent's progress where any other worker finds it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from cadenza_state import StateSettings
from cadenza_state.checkpoints import sqlite_checkpoints_path
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

log = logging.getLogger("cadenza.worker.agents")


@asynccontextmanager
async def open_checkpointer(settings: StateSettings) -> AsyncIterator[BaseCheckpointSaver[str]]:
    """A ready checkpointer (tables created) for ``settings.database_url``; closed on exit."""
    url = make_url(settings.database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        async with _postgres(settings) as saver:
            yield saver
    elif backend == "sqlite":
        async with _sqlite(url.database) as saver:
            yield saver
    else:
        raise ValueError(f"no LangGraph checkpointer for database backend {backend!r}")


@asynccontextmanager
async def _postgres(settings: StateSettings) -> AsyncIterator[BaseCheckpointSaver[str]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    url = make_url(settings.database_url).set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    kwargs: dict[str, object] = {"autocommit": True, "prepare_threshold": 0}
    kwargs["row_factory"] = dict_row
    if settings.database_schema:
        kwargs["options"] = f"-c search_path={settings.database_schema}"
    pool = AsyncConnectionPool(conninfo, min_size=1, max_size=4, kwargs=kwargs, open=False)
    await pool.open(wait=True, timeout=30)
    try:
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()  # idempotent; runs the checkpointer's own migrations
        yield saver
    finally:
        await pool.close()


@asynccontextmanager
async def _sqlite(database: str | None) -> AsyncIterator[BaseCheckpointSaver[str]]:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    # Beside the state database (its own file: LangGraph manages its own transactions).
    path = sqlite_checkpoints_path(database)
    conn = await aiosqlite.connect(path)
    try:
        await conn.execute("PRAGMA busy_timeout=30000")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()
