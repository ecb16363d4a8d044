"""`cadenza runs watch ID`: a run's live progress from its event stream (SSE), task by task,
ending with the run's result. A dropped connection resumes from the last event seen
(``Last-Event-ID``), so nothing is shown twice or skipped."""

from __future__ import annotations

import sys
from typing import Annotated, TextIO

import typer
from cadenza_client import AsyncCadenza, Run, RunEvent

from .client import DEFAULT_URL, on_gateway, print_result


def describe(sse: RunEvent) -> str | None:
    """One terminal line per event worth showing; None for events that add nothing."""
    if sse.event == "end":
        return f"stream ended: run {sse.data.get('status')}"
    event = sse.data
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
    shown_id = sse.id if sse.id is not None else "-"
    return f"[{shown_id:>4}] {at}  {what:<40} {status}{suffix}".rstrip()


async def watch(client: AsyncCadenza, run_id: str, out: TextIO) -> Run:
    """Print the run's progress until it ends (the client resumes a dropped stream after
    the last event seen); return the final run."""
    async for sse in client.events(run_id):
        line = describe(sse)
        if line:
            print(line, file=out, flush=True)
    return await client.get_run(run_id)


def watch_command(
    run_id: Annotated[str, typer.Argument(help="The run to follow.")],
    url: Annotated[
        str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")
    ] = DEFAULT_URL,
) -> None:
    """Follow a run live, task by task, then print its result (exit 1 unless it succeeded)."""
    print_result(on_gateway(url, lambda client: watch(client, run_id, sys.stderr)))
