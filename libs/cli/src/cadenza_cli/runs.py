"""`cadenza run` and `cadenza runs list|show|cancel`: talk to a running gateway."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
import typer

from .bundles import BundleError, submit_run
from .client import DEFAULT_URL, ApiError, api_client, cadenza, print_json, wait_for_run
from .inputs import parse_inputs

UrlOption = Annotated[str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")]
runs_app = typer.Typer(help="List, show and cancel runs.", no_args_is_help=True)


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
def show_run(run_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """Show one run with its tasks."""

    async def go() -> dict[str, Any]:
        async with cadenza(url) as client:
            return (await client.get_run(run_id)).model_dump(mode="json")

    try:
        print_json(asyncio.run(go()))
    except (ApiError, httpx.HTTPError) as exc:
        _fail(exc)


@runs_app.command("cancel")
def cancel_run(run_id: str, url: UrlOption = DEFAULT_URL) -> None:
    """Cancel a run: its running tasks are stopped."""

    async def go() -> dict[str, Any]:
        async with cadenza(url) as client:
            return await client.cancel_run(run_id)

    try:
        run = asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        _fail(exc)
    typer.echo(f"run {run['id']} {run['status']}")
