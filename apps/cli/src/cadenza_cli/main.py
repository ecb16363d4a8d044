"""The `cadenza` command line."""

from __future__ import annotations

import typer

from cadenza_cli import services
from cadenza_cli.dev import dev_command
from cadenza_cli.evaluate import eval_command
from cadenza_cli.guardrails import approvals_app, dead_letters_app
from cadenza_cli.infra import infra_app
from cadenza_cli.keys import keys_app
from cadenza_cli.migrate import migrate_command
from cadenza_cli.retention import retention_app
from cadenza_cli.runs import run_command, runs_app
from cadenza_cli.triggers import events_app, schedules_app, triggers_app
from cadenza_cli.watch import watch_command

app = typer.Typer(help="Cadenza: event-driven multi-agent workflows.", no_args_is_help=True)
app.command("dev")(dev_command)
app.command("run")(run_command)
app.command("eval")(eval_command)
app.command("migrate")(migrate_command)
runs_app.command("watch")(watch_command)
app.add_typer(runs_app, name="runs")
app.add_typer(infra_app, name="infra")
app.add_typer(keys_app, name="keys")
app.add_typer(triggers_app, name="triggers")
app.add_typer(schedules_app, name="schedules")
app.add_typer(events_app, name="events")
app.add_typer(approvals_app, name="approvals")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(retention_app, name="retention")
services.register(app)
