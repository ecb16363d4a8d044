"""The CLI's access to the gateway: the typed client `cadenza_client` (credential, problem
errors as typed exceptions, retries), and live progress printing for `--wait`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from cadenza_client import ApiError, AsyncCadenza, format_problem, raise_for_problem
from cadenza_workflow.loading import load_document

DEFAULT_URL = os.environ.get("CADENZA_URL", "http://127.0.0.1:8080")
API_KEY_ENV = "CADENZA_API_KEY"
__all__ = ["ApiError", "format_problem"]


def cadenza(url: str, *, timeout: Any = 30, api_key: str | None = None) -> AsyncCadenza:
    """The typed client of the gateway at ``url``, sending ``api_key`` (default:
    $CADENZA_API_KEY) as its bearer credential; without one, only a dev-mode gateway answers."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    return AsyncCadenza(url, api_key=key or None, timeout=timeout)


def api_client(url: str, *, timeout: Any = 30, api_key: str | None = None) -> httpx.AsyncClient:
    """The typed client's HTTP connection, for requests it does not wrap (bundle uploads)."""
    return cadenza(url, timeout=timeout, api_key=api_key).http


TERMINAL = {"succeeded", "failed", "cancelled", "budget_exceeded"}
WAIT_ENDS = TERMINAL | {"paused"}
"""Where waiting for a run stops: it finished, or a budget paused it for an operator."""


def _check(resp: httpx.Response) -> dict[str, Any]:
    raise_for_problem(resp)  # a typed cadenza_client.ApiError (NotFound, Conflict, …)
    data: dict[str, Any] = resp.json()
    return data


def run_request(target: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A file path becomes an inline spec; anything else names a registered workflow."""
    path = Path(target)
    if path.is_file():
        # The gateway's own YAML 1.2 loader: `NO` stays a string, `on` is not `true`, a date
        # is text (PyYAML's safe_load is YAML 1.1 and would change all three).
        content_type = "application/json" if path.suffix == ".json" else None
        spec = load_document(path.read_text(), content_type)
        return {"spec": spec, "inputs": inputs}
    return {"workflow": target, "inputs": inputs}


async def submit(
    client: httpx.AsyncClient, body: dict[str, Any], idempotency_key: str | None = None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return _check(await client.post("/v1/runs", json=body, headers=headers))


async def get_run(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    return _check(await client.get(f"/v1/runs/{run_id}"))


async def wait_for_run(
    client: httpx.AsyncClient, run_id: str, *, interval_s: float = 0.2, out: Any = sys.stderr
) -> dict[str, Any]:
    """Poll the run, printing each task's status change, until it is terminal or paused
    (a paused run waits for a person: ``cadenza runs resume``)."""
    seen: dict[str, str] = {}
    while True:
        run = await get_run(client, run_id)
        for task in run.get("tasks", []):
            label = task["node_id"] + (
                f"[{task['item_index']}]" if task.get("item_index") is not None else ""
            )
            status = task["status"]
            if seen.get(label) != status:
                seen[label] = status
                extra = f" (attempt {task['attempt']})" if task.get("attempt", 0) > 1 else ""
                print(f"  {label:<28} {status}{extra}", file=out)
        if run["status"] in WAIT_ENDS:
            if run["status"] == "paused":
                print(
                    f"  run paused by a budget: {(run.get('error') or {}).get('message', '')}\n"
                    f"  raise the limit, then: cadenza runs resume {run_id}",
                    file=out,
                )
            return run
        await asyncio.sleep(interval_s)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))
