"""Deleting many rows a page at a time: what retention passes do to tables that grow
forever (dedupe ledgers, resolved dead letters).

One transaction per page keeps every lock short; the page is picked ``FOR UPDATE SKIP
LOCKED`` (PostgreSQL; SQLite has one writer anyway), so processes running the same pass
at once delete disjoint pages instead of waiting on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

__all__ = ["delete_in_pages"]

OnPage = Callable[[AsyncSession, Sequence[Row[Any]]], None]


async def delete_in_pages(
    sessions: async_sessionmaker[AsyncSession],
    key: Sequence[InstrumentedAttribute[Any]],
    where: Sequence[ColumnElement[bool]],
    order_by: InstrumentedAttribute[Any],
    batch: int,
    *,
    returning: Sequence[InstrumentedAttribute[Any]] = (),
    on_page: OnPage | None = None,
) -> int:
    """Delete the rows of ``key``'s table matching ``where``, ``batch`` at a time in
    ``order_by`` order, until a page deletes fewer; returns how many went. ``on_page`` gets
    each page's session and its deleted rows (``returning``'s columns, else ``key``'s) to
    write what goes with them in the same transaction (an audit entry, a metric)."""
    page = select(*key).where(*where).order_by(order_by).limit(batch)
    picked = tuple_(*key) if len(key) > 1 else key[0]
    statement = (
        delete(key[0].class_)
        .where(picked.in_(page.with_for_update(skip_locked=True)))
        .returning(*(returning or key))
    )
    total = 0
    while True:
        async with sessions() as session, session.begin():
            rows = (await session.execute(statement)).all()
            if on_page is not None:
                on_page(session, rows)
        total += len(rows)
        if len(rows) < batch:
            return total
