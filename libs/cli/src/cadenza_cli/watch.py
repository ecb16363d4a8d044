"""`cadenza runs watch ID`: a run's live progress from its event stream (SSE), task by task,
ending with the run's result. A dropped connection resumes from the last event seen
(``Last-Event-ID``), so nothing is shown twice or skipped."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TextIO

import httpx
import typer

from .client import DEFAULT_URL, ApiError, api_client, get_run, print_json

TERMINAL_EVENTS = frozenset(
    {"run.succeeded", "run.failed", "run.cancelled", "run.budget_exceeded", "end"}
)
RECONNECTS = 20


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data) if self.data else {}
        return value if isinstance(value, dict) else {"value": value}


async def parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    """The text/event-stream format: fields until a blank line; comments (pings) skipped."""
    event, event_id = "message", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data), event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value


async def follow_events(
    client: httpx.AsyncClient, run_id: str, after: int = 0, *, reconnects: int = RECONNECTS
) -> AsyncIterator[SseEvent]:
    """Every event of the run after ``after`` until its terminal one, reconnecting (with
    Last-Event-ID) when the stream drops before that."""
    last = after
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
        try:
            async with client.stream(
                "GET",
                f"/v1/runs/{run_id}/events",
                headers=headers,
                timeout=httpx.Timeout(30, read=None),
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise ApiError(resp.status_code, _problem(resp))
                async for sse in parse_sse(resp.aiter_lines()):
                    failures = 0
                    if sse.id is not None and sse.id.isdigit():
                        last = int(sse.id)
                    yield sse
                    if sse.event in TERMINAL_EVENTS:
                        return
        except (httpx.TransportError, httpx.RemoteProtocolError):
            failures += 1
            if failures > reconnects:
                raise
            await asyncio.sleep(min(0.2 * 2**failures, 5.0))


def _problem(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {"title": resp.reason_phrase, "detail": resp.text[:500]}
    return body if isinstance(body, dict) else {"title": resp.reason_phrase}


def describe(sse: SseEvent) -> str | None:
    """One terminal line per event worth showing; None for events that add nothing."""
    if sse.event == "end":
        return f"stream ended: run {sse.json().get('status')}"
    event = sse.json()
    data = event.get("data") or {}
    at = str(event.get("at", ""))[11:23]
    task = event.get("node_id") or ""
    if "item_index" in data and data["item_index"] is not None:
        task += f"[{data['item_index']}]"
    kind = sse.event
    detail = []
    if data.get("attempt", 1) and data.get("attempt", 1) > 1:
        detail.append(f"attempt {data['attempt']}")
    if kind == "task.finished" and "duration_s" in data:
        detail.append(f"{data['duration_s'] * 1000:.0f} ms")
    if kind == "llm.call":
        detail.append(
            f"{data.get('model')} turn {data.get('turn')}: {data.get('input_tokens')} in / "
            f"{data.get('output_tokens')} out tokens, ${data.get('cost_usd', 0):.4f}, "
            f"{data.get('latency_ms', 0):.0f} ms"
        )
    if kind == "tool.call":
        detail.append(
            f"{data.get('tool')} {data.get('status')}, {data.get('latency_ms', 0):.0f} ms"
        )
    if kind == "task.retrying":
        detail.append(f"try {data.get('try')} failed: {(data.get('error') or {}).get('code')}")
    error = data.get("error")
    if isinstance(error, dict) and kind in ("task.failed", "run.failed", "run.budget_exceeded"):
        detail.append(str(error.get("message") or error.get("code") or error)[:120])
    status = event.get("status") or data.get("status") or ""
    what = kind if not task else f"{task:<24} {kind}"
    suffix = f" ({', '.join(detail)})" if detail else ""
    return f"[{sse.id or '-':>4}] {at}  {what:<40} {status}{suffix}".rstrip()


async def watch(client: httpx.AsyncClient, run_id: str, out: TextIO) -> dict[str, Any]:
    """Print the run's progress until it ends; return the final run."""
    async for sse in follow_events(client, run_id):
        line = describe(sse)
        if line:
            print(line, file=out, flush=True)
    return await get_run(client, run_id)


def watch_command(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    url: Annotated[
        str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")
    ] = DEFAULT_URL,
) -> None:
    """Follow a run live, task by task, then print its result (exit 1 unless it succeeded)."""

    async def go() -> dict[str, Any]:
        async with api_client(url) as client:
            return await watch(client, run_id, sys.stderr)

    try:
        run = asyncio.run(go())
    except (ApiError, httpx.HTTPError) as exc:
        typer.echo(str(exc) or repr(exc), err=True)
        raise typer.Exit(2) from exc
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
