"""What a piece of code sends to PostgreSQL: its statements and the transactions begun."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg.transaction
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def watched(engine: AsyncEngine) -> Iterator[tuple[list[str], list[str]]]:
    """The statements the current asyncio task sends through ``engine`` (those straight on
    asyncpg too: ``cadenza_state.direct`` reports them), and a ``"BEGIN"`` for each
    transaction asyncpg begins for it. Other tasks (background loops) are left out."""
    statements: list[str] = []
    begun: list[str] = []
    me = asyncio.current_task()

    def observe(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if asyncio.current_task() is me:
            statements.append(statement)

    real_start = asyncpg.transaction.Transaction.start

    async def start(self: Any) -> None:
        if asyncio.current_task() is me:
            begun.append("BEGIN")
        await real_start(self)

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", observe)
    asyncpg.transaction.Transaction.start = start  # type: ignore[method-assign]
    try:
        yield statements, begun
    finally:
        asyncpg.transaction.Transaction.start = real_start  # type: ignore[method-assign]
        event.remove(sync, "before_cursor_execute", observe)
