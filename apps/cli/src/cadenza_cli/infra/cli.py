"""`cadenza infra up|down|status`: local Kafka, PostgreSQL, Redis and MinIO for dev and tests."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from cadenza_cli.infra import ops, tools
from cadenza_cli.infra.base import Service
from cadenza_cli.infra.paths import cache_dir, state_dir
from cadenza_cli.infra.postgres import dsn
from cadenza_cli.infra.process import InfraError

infra_app = typer.Typer(
    help="Install, start and stop the local infrastructure (Kafka, PostgreSQL, Redis, MinIO).",
    no_args_is_help=True,
)

Only = Annotated[
    str | None,
    typer.Option("--only", help=f"Comma-separated subset of: {','.join(ops.SERVICE_NAMES)}."),
]


With = Annotated[
    str | None,
    typer.Option("--with", help=f"Also these optional services: {','.join(ops.OPTIONAL_NAMES)}."),
]


def _names(value: str | None) -> list[str]:
    return [n.strip() for n in value.split(",") if n.strip()] if value else []


def _services(only: str | None, also: str | None = None, *, running: bool = False) -> list[Service]:
    """``running``: include optional services that are up (for down and status)."""
    extra = _names(also)
    if running and not only:
        extra += [n for n in ops.running_optional(state_dir(), cache_dir()) if n not in extra]
    try:
        return ops.select(_names(only) or None, state_dir(), cache_dir(), extra)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--only/--with") from e


def _fail(errors: list[InfraError]) -> None:
    for e in errors:
        typer.echo(e.describe(), err=True)
    raise typer.Exit(1)


@infra_app.command()
def up(only: Only = None, also: With = None) -> None:
    """Install what is missing, start what is stopped, wait until everything is healthy."""
    services = _services(only, also)
    report = ops.Reporter(typer.echo)
    state = state_dir()
    typer.echo(f"state: {state}  cache: {cache_dir()}")
    with ops.state_lock(state):
        errors = ops.up(services, state, report)
    typer.echo(f"total {report.elapsed():.1f}s")
    if errors:
        _fail(errors)
    if any(s.name == "postgres" for s in services):
        typer.echo(f"postgres dsn: {dsn(_pg_port(services))}")


def _pg_port(services: list[Service]) -> int:
    return next(s.port for s in services if s.name == "postgres")


@infra_app.command()
def down(
    only: Only = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the services' data and logs.")
    ] = False,
) -> None:
    """Stop exactly the processes `up` started (by pid file)."""
    services = _services(only, running=True)
    report = ops.Reporter(typer.echo)
    with ops.state_lock(state_dir()):
        errors = ops.down(services, report, purge)
    typer.echo(f"total {report.elapsed():.1f}s")
    if errors:
        _fail(errors)


@infra_app.command()
def status(only: Only = None) -> None:
    """Show each service's address, pid and health; exit 1 unless all are healthy."""
    t = time.monotonic()
    rows = ops.statuses(_services(only, running=True))
    typer.echo(ops.format_status(rows))
    typer.echo(f"state: {state_dir()}  ({time.monotonic() - t:.1f}s)")
    if not ops.all_healthy(rows):
        raise typer.Exit(1)


@infra_app.command()
def tool(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(tools.TOOLS)}.")],
) -> None:
    """Print the path of a deployment tool (helm, compose), building it with Go first if it
    is not cached (minutes on a cold Go cache)."""
    if name not in tools.TOOLS:
        raise typer.BadParameter(f"unknown tool {name!r}; one of: {', '.join(tools.TOOLS)}")
    try:
        path = tools.ensure(name)
    except tools.ToolError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from e
    typer.echo(str(path))
