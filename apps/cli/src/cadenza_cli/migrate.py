"""`cadenza migrate`: prepare the state stores and exit (a deployment's migration job).

Services migrate at start-up too (serialised by an advisory lock), so this is not required;
it lets Helm's pre-install/pre-upgrade hook (and a cautious operator) upgrade the database
and create the bucket once, before new pods start, and fail the release if that fails.
"""

from __future__ import annotations

import asyncio
import logging

from cadenza_state import StateSettings, open_state

log = logging.getLogger("cadenza.migrate")


async def run_migrations(settings: StateSettings) -> None:
    state = await open_state(settings, run_migrations=True)
    await state.aclose()


def migrate_command() -> None:
    """Upgrade the database to the newest migration and create the object bucket."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = StateSettings()
    asyncio.run(run_migrations(settings))
    target = settings.database_schema or "the default schema"
    log.info("database at the newest migration (%s); bucket %s ready", target, settings.s3_bucket)
