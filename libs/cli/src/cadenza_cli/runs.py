"""`cadenza run` and `cadenza runs list|show|cancel|resume`: talk to a running gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
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
    help="List, show, cancel, resume, rerun, fork and compare runs.", no_args_is_help=True
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


ReasonOption = Annotated[
    str | None, typer.Option(help="Why (kept in the timeline and the audit log).")
]


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
    body: dict[str, Any] = {"reason": reason} if reason else {}
    if budget:
        body["budget"] = budget

    async def applied(client: httpx.AsyncClient, accepted: dict[str, Any]) -> None:
        held = {t["id"]: t["attempt"] for t in accepted.get("tasks", [])}
        await _resumed(client, run_id, held)

    _run_command(url, run_id, "resume", body or None, wait, applied)


def _run_command(
    url: str,
    run_id: str,
    action: str,
    body: dict[str, Any] | None,
    wait: bool,
    applied: Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[None]] | None = None,
) -> None:
    """POST /v1/runs/{id}/{action}; with ``wait``, until the orchestrator applied it
    (``applied``, if given) and the run then stopped where waiting ends."""

    async def go() -> dict[str, Any]:
        async with _client(url) as client:
            resp = await client.post(f"/v1/runs/{run_id}/{action}", json=body)
            if resp.status_code >= 400:
                raise ApiError(resp.status_code, resp.json())
            data: dict[str, Any] = resp.json()
            if wait:
                if applied is not None:
                    await applied(client, data)
                data = await wait_for_run(client, run_id)
            return data

    try:
        run = asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        _fail(exc)
    typer.echo(f"run {run['id']} {run['status'] if wait else f'{action} requested'}")


async def _resumed(
    client: httpx.AsyncClient, run_id: str, before: dict[str, int], timeout_s: float = 300
) -> dict[str, Any]:
    """Wait until the orchestrator applied the resume: the run left ``paused``, or a task
    was dispatched again (it may have been paused again already)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        run = await get_run(client, run_id)
        again = any(t["attempt"] > before.get(t["id"], t["attempt"]) for t in run["tasks"])
        if run["status"] != "paused" or again:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise ApiError(504, {"detail": f"run {run_id} was not resumed in {timeout_s:.0f} s"})
        await asyncio.sleep(0.2)


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
    _run_command(url, run_id, "cancel", {"reason": reason} if reason else None, wait)
