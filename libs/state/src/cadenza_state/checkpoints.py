"""Where the agent loops' LangGraph checkpoints live, and how a run's are deleted.

The worker's checkpointer keeps them in the state database (PostgreSQL: the same schema,
tables ``checkpoints``, ``checkpoint_blobs``, ``checkpoint_writes``) or, in dev, in a SQLite
file beside the state database (tables ``checkpoints``, ``writes``): LangGraph manages that
connection's transactions itself. One thread per agent task attempt, ``{task id}:{attempt}``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import aiosqlite
from sqlalchemy import bindparam, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

POSTGRES_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
SQLITE_TABLES = ("checkpoints", "writes")
_CHUNK = 500  # thread ids per statement: SQLite caps the variables of one


def thread_id(task_id: str, attempt: int) -> str:
    """The checkpointer thread of one agent task attempt."""
    return f"{task_id}:{attempt}"


def sqlite_checkpoints_path(database: str | None) -> str:
    """The dev checkpointer's file for the SQLite state database ``database``."""
    if not database or database == ":memory:":
        return ":memory:"
    db = Path(database)
    return str(db.with_name(f"{db.stem}.checkpoints.sqlite"))


async def delete_checkpoint_threads(engine: AsyncEngine, threads: Sequence[str]) -> int:
    """Delete every checkpoint row of ``threads``, from whichever checkpointer tables exist
    (a worker creates them); returns how many rows went."""
    if not threads:
        return 0
    if engine.dialect.name == "postgresql":
        return await _delete_postgres(engine, threads)
    path = sqlite_checkpoints_path(engine.url.database)
    if path == ":memory:" or not await asyncio.to_thread(os.path.exists, path):
        return 0
    return await _delete_sqlite(path, threads)


async def _delete_postgres(engine: AsyncEngine, threads: Sequence[str]) -> int:
    deleted = 0
    async with engine.begin() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        for table in (t for t in POSTGRES_TABLES if t in names):
            statement = text(f"DELETE FROM {table} WHERE thread_id IN :threads").bindparams(
                bindparam("threads", expanding=True)
            )
            for start in range(0, len(threads), _CHUNK):
                result = await conn.execute(statement, {"threads": threads[start : start + _CHUNK]})
                deleted += max(result.rowcount or 0, 0)
    return deleted


async def _delete_sqlite(path: str, threads: Sequence[str]) -> int:
    deleted = 0
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA busy_timeout=30000")
        rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        names = {row[0] for row in rows}
        for table in (t for t in SQLITE_TABLES if t in names):
            for start in range(0, len(threads), _CHUNK):
                chunk = threads[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                cursor = await conn.execute(
                    f"DELETE FROM {table} WHERE thread_id IN ({marks})", chunk
                )
                deleted += max(cursor.rowcount, 0)
        await conn.commit()
    return deleted
