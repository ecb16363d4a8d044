"""`cadenza retention preview | run`: what run history retention deletes, and one pass now;
`cadenza retention ledgers preview | run`: the same for the trigger and schedule dedupe
ledgers.

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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the services are imported when a command runs, not with the CLI
    from cadenza_orchestrator import OrchestratorSettings
    from cadenza_orchestrator.retention import Retention
    from cadenza_state import StateRuntime

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
async def _state() -> AsyncIterator[StateRuntime]:
    """The state stores of $CADENZA_* (migrated first, as every service opens them)."""
    from cadenza_state import StateSettings, open_state

    state = await open_state(StateSettings())
    try:
        yield state
    finally:
        await state.aclose()


@asynccontextmanager
async def _retention(settings: OrchestratorSettings) -> AsyncIterator[Retention]:
    from cadenza_orchestrator.retention import Retention

    async with _state() as state:
        yield Retention(state, settings)


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


ledgers_app = typer.Typer(
    help="Retention of the trigger and schedule dedupe ledgers (triggered_events, "
    "schedule_fires): what it deletes, and a pass now.",
    no_args_is_help=True,
)
retention_app.add_typer(ledgers_app, name="ledgers")

LedgerDaysOption = Annotated[
    float | None,
    typer.Option(
        "--days",
        help="Delete ledger rows older than this many days. Default: "
        "$CADENZA_TRIGGER_LEDGER_RETENTION_DAYS. An event redelivered or replayed after its "
        "row is gone starts a second run: keep more days than the upstream topics' retention.",
    ),
]


def _ledger_days(days: float | None) -> float:
    """The days to keep: the option, else the trigger service's own setting."""
    from cadenza_trigger.settings import TriggerSettings

    if days is None:
        days = TriggerSettings().ledger_retention_days
    if days < 0:
        raise typer.BadParameter("must be 0 or more days", param_hint="--days")
    if days == 0:
        raise typer.BadParameter(
            "ledger retention is off (0 days): give --days or set "
            "CADENZA_TRIGGER_LEDGER_RETENTION_DAYS",
            param_hint="--days",
        )
    return days


def _ledger_cutoff(days: float, as_of: datetime | None) -> datetime:
    from cadenza_state import utcnow

    return (_as_of(as_of) or utcnow()) - timedelta(days=days)


@ledgers_app.command("preview")
def ledgers_preview(days: LedgerDaysOption = None, as_of: AsOfOption = None) -> None:
    """How many ledger rows a pass would delete."""
    keep = _ledger_days(days)
    before = _ledger_cutoff(keep, as_of)

    async def go() -> None:
        from cadenza_triggers import count_ledger_rows

        async with _state() as state:
            due = await count_ledger_rows(state.sessions, before)
        typer.echo(
            f"keeping {keep:g} day(s): {due.triggered_events} triggered event(s) and "
            f"{due.schedule_fires} schedule fire(s) from before {before.isoformat()} would be "
            "deleted"
        )

    asyncio.run(go())


@ledgers_app.command("run")
def ledgers_run(days: LedgerDaysOption = None, as_of: AsOfOption = None) -> None:
    """Delete them now, a page per transaction (safe beside the trigger services' passes)."""
    keep = _ledger_days(days)
    before = _ledger_cutoff(keep, as_of)

    async def go() -> None:
        from cadenza_trigger.settings import TriggerSettings
        from cadenza_triggers import prune_ledgers

        batch = TriggerSettings().ledger_retention_batch_size
        async with _state() as state:
            pruned = await prune_ledgers(state.sessions, before, batch)
        typer.echo(
            f"deleted {pruned.triggered_events} triggered event(s) and {pruned.schedule_fires} "
            f"schedule fire(s) from before {before.isoformat()} (keeping {keep:g} day(s))"
        )

    asyncio.run(go())
