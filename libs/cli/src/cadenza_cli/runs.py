"""`cadenza run` and `cadenza runs list|show|cancel`: talk to a running gateway."""

from __future__ import annotations

from typing import Annotated

import typer
from cadenza_client import AsyncCadenza, Page, RecordedCall, Run, RunSummary

from .bundles import BundleError, submit_run
from .client import DEFAULT_URL, on_gateway, print_json, print_result, wait_for_run
from .inputs import parse_inputs
from .replay import diff_command, fork_command, format_call, rerun_command

UrlOption = Annotated[str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")]
runs_app = typer.Typer(
    help="List, show, cancel, rerun, fork and compare runs.", no_args_is_help=True
)
runs_app.command("rerun")(rerun_command)
runs_app.command("fork")(fork_command)
runs_app.command("diff")(diff_command)


def run_command(
    target: Annotated[
        str,
        typer.Argument(
            help="A workflow file (YAML/JSON), a bundle directory (agents/, data/, "
            "workflow.yaml) or a registered name[@version]."
        ),
    ],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="key=value (JSON values allowed).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show live progress and print the output.")
    ] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Same key, same run.")] = None,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Submit a run."""

    async def go(client: AsyncCadenza) -> Run:
        run = await submit_run(client, target, parse_inputs(inputs), idempotency_key)
        typer.echo(f"run {run.id} accepted", err=True)
        if wait:
            run = await wait_for_run(client, run.id)
        return run

    try:
        run = on_gateway(url, go)
    except BundleError as exc:
        typer.echo(str(exc) or repr(exc), err=True)
        raise typer.Exit(2) from None
    if wait:
        print_result(run)
    else:
        print_json(run)


@runs_app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="Filter by status.")] = None,
    workflow: Annotated[str | None, typer.Option(help="Filter by workflow name.")] = None,
    limit: int = 20,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """List recent runs."""

    async def go(client: AsyncCadenza) -> Page[RunSummary]:
        return await client.list_runs(status=status, workflow=workflow, limit=limit)

    for run in on_gateway(url, go).items:
        created = run.model_dump(mode="json", include={"created_at"})["created_at"]
        typer.echo(f"{run.id}  {run.status:<10} {run.workflow_name or '(inline)'}  {created}")


@runs_app.command("show")
def show_run(
    run_id: str,
    calls: Annotated[
        bool,
        typer.Option(
            "--calls", help="Print every LLM and tool call of the run, in order, one a line."
        ),
    ] = False,
    calls_json: Annotated[
        bool, typer.Option("--calls-json", help="Print every call whole (messages, results).")
    ] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Show one run with its tasks (and lineage, for a rerun or fork), or its calls."""

    async def go(client: AsyncCadenza) -> Run | list[RecordedCall]:
        if calls or calls_json:
            return [call async for call in client.iter_calls(run_id)]
        return await client.get_run(run_id)

    data = on_gateway(url, go)
    if calls and not calls_json and isinstance(data, list):
        for call in data:
            typer.echo(format_call(call))
    else:
        print_json(data)


@runs_app.command("cancel")
def cancel_run(
    run_id: str,
    reason: Annotated[
        str | None, typer.Option(help="Why (kept in the timeline and the audit log).")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the orchestrator has cancelled the run.")
    ] = True,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Cancel a run: its open tasks are cancelled and its running tasks stopped."""

    async def go(client: AsyncCadenza) -> Run:
        run = await client.cancel_run(run_id, reason=reason)
        return await wait_for_run(client, run_id) if wait else run

    run = on_gateway(url, go)
    typer.echo(f"run {run.id} {run.status if wait else 'cancel requested'}")
