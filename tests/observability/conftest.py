"""Observability fixtures: the whole platform in one process (`cadenza dev`'s stack) on a
free port, for the live event stream and metrics tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_client import RunEvent, parse_sse
from cadenza_runtime import open_resources


@pytest.fixture
async def dev_stack(tmp_path: Path) -> AsyncIterator[DevStack]:
    resources = await open_resources(*dev_settings(tmp_path / "dev"))
    stack = DevStack(resources, port=0, data_dir=tmp_path / "dev")
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@pytest.fixture
async def api(dev_stack: DevStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=dev_stack.url, timeout=30) as client:
        yield client


def sleep_chain(name: str, length: int, seconds: float) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    for i in range(length):
        needs = [f"s{i - 1}"] if i else []
        tasks.append({"id": f"s{i}", "tool": "sleep", "needs": needs, "with": {"seconds": seconds}})
    return {"name": name, "tasks": tasks}


async def start_run(api: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    resp = await api.post("/v1/runs", json={"spec": spec, "inputs": {}})
    assert resp.status_code == 201, resp.text
    run_id: str = resp.json()["id"]
    return run_id


async def read_events(
    api: httpx.AsyncClient,
    run_id: str,
    *,
    last_event_id: int | None = None,
    limit: int | None = None,
) -> list[RunEvent]:
    """Read the SSE stream until it ends (or ``limit`` events, then disconnect)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    got: list[RunEvent] = []
    async with api.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for event in parse_sse(resp.aiter_lines()):
            got.append(event)
            if limit is not None and len(got) >= limit:
                break
    return got
