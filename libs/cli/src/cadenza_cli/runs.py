"""`cadenza run` and `cadenza runs list|show|cancel`: talk to a running gateway."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
import typer

from .bundles import BundleError, submit_run
from .client import (
    DEFAULT_URL,
    ApiError,
    api_client,
    cadenza,
    get_run,
    print_json,
    wait_for_run,
)
from .inputs import parse_inputs
from .replay import all_calls, diff_command, fork_command, format_call, rerun_command

UrlOption = Annotated[str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")]
runs_app = typer.Typer(
    help="List, show, cancel, rerun, fork and compare runs.", no_args_is_help=True
)
runs_app.command("rerun")(rerun_command)
runs_app.command("fork")(fork_command)
runs_app.command("diff")(diff_command)


def _client(url: str) -> httpx.AsyncClient:
    return api_client(url)


def _fail(exc: ApiError | BundleError | httpx.HTTPError) -> None:
    typer.echo(str(exc) or repr(exc), err=True)
    raise typer.Exit(2)


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

    async def go() -> dict[str, Any]:
        async with _client(url) as client:
            run = await submit_run(client, target, parse_inputs(inputs), idempotency_key)
            typer.echo(f"run {run['id']} accepted", err=True)
            if wait:
                run = await wait_for_run(client, run["id"])
            return run

    try:
        run = asyncio.run(go())
    except (ApiError, BundleError, httpx.HTTPError) as exc:
        _fail(exc)
    if wait:
        print_json(
            {
                "id": run["id"],
                "status": run["status"],
                "output": run.get("output"),
                "error": run.get("error"),
            }
        )
        if run["status"] != "succeeded":
            raise typer.Exit(1)
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

    async def go() -> dict[str, Any]:
        async with cadenza(url) as client:
            page = await client.list_runs(status=status, workflow=workflow, limit=limit)
            return page.model_dump(mode="json")

    try:
        page = asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        _fail(exc)
    for run in page.get("items", []):
        typer.echo(
            f"{run['id']}  {run['status']:<10} {run.get('workflow_name') or '(inline)'}  {run['created_at']}"
        )


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

    async def go() -> Any:
        async with _client(url) as client:
            if calls or calls_json:
                return await all_calls(client, run_id)
            return await get_run(client, run_id)

    try:
        data = asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        _fail(exc)
    if calls_json:
        print_json(data)
    elif calls:
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

    async def go() -> dict[str, Any]:
        async with _client(url) as client:
            body = {"reason": reason} if reason else None
            resp = await client.post(f"/v1/runs/{run_id}/cancel", json=body)
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, resp.json())
            data: dict[str, Any] = resp.json()
            if wait:
                data = await wait_for_run(client, run_id)
            return data

    try:
        run = asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        _fail(exc)
    typer.echo(f"run {run['id']} {run['status'] if wait else 'cancel requested'}")
