"""`cadenza retention preview | run`: what run history retention deletes, and one pass now.

Against the state stores directly ($CADENZA_DATABASE_URL, the object store settings), as
`cadenza migrate` and `cadenza keys bootstrap` are: an operator's tools, for a look before
turning retention on (`CADENZA_ORCHESTRATOR_RETENTION_DAYS`) or for a deployment that runs
it from its own scheduler instead of the orchestrators' hourly pass (docs/state.md,
"Retention").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the services are imported when a command runs, not with the CLI
    from cadenza_orchestrator import OrchestratorSettings
    from cadenza_orchestrator.retention import Retention

retention_app = typer.Typer(
    help="Run history retention: what it deletes, and a pass now (operators; the database "
    "and object store settings of the services).",
    no_args_is_help=True,
)

DaysOption = Annotated[
    float | None,
    typer.Option(
        "--days",
        help="Delete runs that finished more than this many days ago (never one of the "
        "current UTC month). Default: $CADENZA_ORCHESTRATOR_RETENTION_DAYS.",
    ),
]
AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        help="Take the cutoff as of this time (UTC unless it says otherwise) instead of now: "
        "what a later pass would delete.",
    ),
]


def _settings(days: float | None) -> OrchestratorSettings:
    """The orchestrator's settings with the days to keep: the option, else its own."""
    from cadenza_orchestrator import OrchestratorSettings

    settings = OrchestratorSettings()
    if days is None:
        days = settings.retention_days
    if days < 0:
        raise typer.BadParameter("must be 0 or more days", param_hint="--days")
    if days == 0:
        raise typer.BadParameter(
            "retention is off (0 days): give --days or set CADENZA_ORCHESTRATOR_RETENTION_DAYS",
            param_hint="--days",
        )
    return settings.model_copy(update={"retention_days": days})


def _as_of(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@asynccontextmanager
async def _retention(settings: OrchestratorSettings) -> AsyncIterator[Retention]:
    """A Retention on the state stores of $CADENZA_* (migrated first, as every service)."""
    from cadenza_orchestrator.retention import Retention
    from cadenza_state import StateSettings, open_state

    state = await open_state(StateSettings())
    try:
        yield Retention(state, settings)
    finally:
        await state.aclose()


@retention_app.command("preview")
def preview(days: DaysOption = None, as_of: AsOfOption = None) -> None:
    """How many finished runs a pass would delete, per tenant, and the oldest end."""
    settings = _settings(days)

    async def go() -> None:
        async with _retention(settings) as retention:
            due = await retention.due(_as_of(as_of))
        typer.echo(
            f"keeping {settings.retention_days:g} day(s): {due.runs} run(s) finished before "
            f"{due.cutoff.isoformat()} would be deleted"
        )
        for tenant, (runs, oldest) in due.tenants.items():
            since = oldest.isoformat() if oldest is not None else "-"
            typer.echo(f"  {tenant}: {runs} run(s), the oldest finished {since}")
        typer.echo(f"and {due.dead_letters} replayed or discarded dead letter(s)")

    asyncio.run(go())


@retention_app.command("run")
def run(days: DaysOption = None, as_of: AsOfOption = None) -> None:
    """Delete them now, whole (objects, agent checkpoints, then rows).

    Every orchestrator's runs, not only one's, and safe beside their own passes; one audit
    entry per tenant and page."""
    settings = _settings(days)

    async def go() -> None:
        async with _retention(settings) as retention:
            pruned = await retention.prune_once(_as_of(as_of))
        typer.echo(
            f"deleted {pruned.runs} run(s), {pruned.objects} object(s), "
            f"{pruned.checkpoints} checkpoint row(s), {pruned.dead_letters} resolved dead "
            f"letter(s) (keeping "
            f"{settings.retention_days:g} day(s))"
        )

    asyncio.run(go())
