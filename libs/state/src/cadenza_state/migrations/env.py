"""Alembic environment. :func:`cadenza_state.migrate` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` CLI path connects from StateSettings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from cadenza_state.models import Base

target_metadata = Base.metadata


def _current_schema(connection: Connection) -> str | None:
    # create_engine pins search_path to the configured schema; put the version table there
    # explicitly so each schema migrates independently.
    if connection.dialect.name != "postgresql":
        return None
    schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
    return None if schema in (None, "public") else str(schema)


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=_current_schema(connection),
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    from cadenza_state.db import create_engine
    from cadenza_state.settings import StateSettings

    engine = create_engine(StateSettings())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_with)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

_connection = context.config.attributes.get("connection")
if _connection is not None:
    run_with(_connection)
else:
    asyncio.run(_run_from_settings())
