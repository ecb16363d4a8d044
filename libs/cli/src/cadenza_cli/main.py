"""The `cadenza` command line."""

from __future__ import annotations

import typer

from cadenza_cli.infra import infra_app

app = typer.Typer(help="Cadenza: event-driven multi-agent workflows.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")
