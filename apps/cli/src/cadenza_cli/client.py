"""The CLI's access to the gateway: the typed client `cadenza_client` (credential, problem
errors as typed exceptions, retries), how a command runs against it and shows a problem,
and live progress printing for `--wait`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import typer
from cadenza_client import ApiError, AsyncCadenza, Run, format_problem
from cadenza_workflow.loading import load_document
from pydantic import BaseModel

DEFAULT_URL = os.environ.get("CADENZA_URL", "http://127.0.0.1:8080")
API_KEY_ENV = "CADENZA_API_KEY"
__all__ = ["ApiError", "format_problem"]
T = TypeVar("T")


def cadenza(url: str, *, timeout: Any = 30, api_key: str | None = None) -> AsyncCadenza:
    """The typed client of the gateway at ``url``, sending ``api_key`` (default:
    $CADENZA_API_KEY) as its bearer credential; without one, only a dev-mode gateway answers."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    return AsyncCadenza(url, api_key=key, timeout=timeout)  # "": no credential


def on_gateway(url: str, work: Callable[[AsyncCadenza], Awaitable[T]]) -> T:
    """Run ``work`` with a client of ``url``; a problem (``409 Conflict: …`` with the fields
    it names) or a connection error is printed on stderr and exits 2."""

    async def main() -> T:
        async with cadenza(url) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except (ApiError, httpx.HTTPError, TimeoutError) as exc:
        typer.echo(str(exc) or repr(exc), err=True)
        raise typer.Exit(2) from None


def as_json(value: Any) -> Any:
    """What the gateway sent: a typed model dumped with only the fields it had (so nothing
    the CLI prints changes with the client's defaults)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def run_request(target: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The run's request (``workflow`` or ``spec``, and ``inputs``): a file path becomes an
    inline spec; anything else names a registered workflow."""
    path = Path(target)
    if path.is_file():
        # The gateway's own YAML 1.2 loader: `NO` stays a string, `on` is not `true`, a date
        # is text (PyYAML's safe_load is YAML 1.1 and would change all three).
        content_type = "application/json" if path.suffix == ".json" else None
        spec = load_document(path.read_text(), content_type)
        return {"spec": spec, "inputs": inputs}
    return {"workflow": target, "inputs": inputs}


async def submit(
    client: AsyncCadenza, request: dict[str, Any], idempotency_key: str | None = None
) -> Run:
    """Start the run ``run_request`` (or a bundle) describes."""
    return await client.start_run(
        request.get("workflow"),
        request.get("inputs"),
        spec=request.get("spec"),
        idempotency_key=idempotency_key,
    )


async def wait_for_run(
    client: AsyncCadenza, run_id: str, *, interval_s: float = 0.2, out: Any = sys.stderr
) -> Run:
    """Poll the run, printing each task's status change, until it is terminal or paused
    (a paused run waits for a person: ``cadenza runs resume``)."""
    seen: dict[str, str] = {}
    while True:
        run = await client.get_run(run_id)
        for task in run.tasks:
            label = task.node_id + (f"[{task.item_index}]" if task.item_index is not None else "")
            if seen.get(label) != task.status:
                seen[label] = task.status
                extra = f" (attempt {task.attempt})" if task.attempt > 1 else ""
                print(f"  {label:<28} {task.status}{extra}", file=out)
        if run.terminal:
            return run
        if run.status == "paused":
            print(
                f"  run paused by a budget: {(run.error or {}).get('message', '')}\n"
                f"  raise the limit, then: cadenza runs resume {run_id}",
                file=out,
            )
            return run
        await asyncio.sleep(interval_s)


def print_json(data: Any) -> None:
    print(json.dumps(as_json(data), indent=2, sort_keys=True, default=str))


def print_result(run: Run, **extra: Any) -> None:
    """A finished run's result (``--wait``); exit 1 unless it succeeded."""
    print_json(
        {"id": run.id, "status": run.status, **extra, "output": run.output, "error": run.error}
    )
    if run.status != "succeeded":
        raise typer.Exit(1)
