"""`cadenza run` and `cadenza runs list|show|cancel|resume`: talk to a running gateway."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from cadenza_client import AsyncCadenza, Page, RecordedCall, Run, RunSummary

from .bundles import BundleError, submit_run
from .client import DEFAULT_URL, on_gateway, print_json, print_result, wait_for_run
from .inputs import parse_inputs
from .replay import diff_command, fork_command, format_call, rerun_command

UrlOption = Annotated[str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")]
runs_app = typer.Typer(
    help="List, show, cancel, resume, rerun, fork and compare runs.", no_args_is_help=True
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


ReasonOption = Annotated[
    str | None, typer.Option(help="Why (kept in the timeline and the audit log).")
]


@runs_app.command("cancel")
def cancel_run(
    run_id: str,
    reason: ReasonOption = None,
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


@runs_app.command("resume")
def resume_run(
    run_id: str,
    max_tokens: Annotated[
        int | None, typer.Option(help="New token limit of the run itself (raises its budget).")
    ] = None,
    max_usd: Annotated[
        float | None, typer.Option(help="New USD limit of the run itself (raises its budget).")
    ] = None,
    reason: ReasonOption = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the run finishes or is paused again.")
    ] = True,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Resume a run a budget paused: its held tasks run again from their checkpoints. Raise a
    tenant limit first (PUT /v1/budgets/day|month); a run's own limit with --max-tokens /
    --max-usd."""
    budget = {
        k: v for k, v in {"max_tokens": max_tokens, "max_usd": max_usd}.items() if v is not None
    }

    async def go(client: AsyncCadenza) -> Run:
        accepted = await client.resume_run(run_id, budget=budget or None, reason=reason)
        if not wait:
            return accepted
        await _resumed(client, run_id, {t.id: t.attempt for t in accepted.tasks})
        return await wait_for_run(client, run_id)

    run = on_gateway(url, go)
    typer.echo(f"run {run.id} {run.status if wait else 'resume requested'}")


async def _resumed(
    client: AsyncCadenza, run_id: str, before: dict[str, int], timeout_s: float = 300
) -> Run:
    """Wait until the orchestrator applied the resume: the run left ``paused``, or a task
    was dispatched again (it may have been paused again already)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        run = await client.get_run(run_id)
        again = any(t.attempt > before.get(t.id, t.attempt) for t in run.tasks)
        if run.status != "paused" or again:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"run {run_id} was not resumed in {timeout_s:.0f} s")
        await asyncio.sleep(0.2)
