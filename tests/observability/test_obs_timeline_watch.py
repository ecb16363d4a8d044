"""GET /v1/runs/{id}/timeline (the waterfall) and `cadenza runs watch` (the live view)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta

import httpx
import pytest
from cadenza_cli.dev import DevStack
from cadenza_state import LLMCallRecord, ToolCallRecord
from conftest import read_events, sleep_chain, start_run

pytestmark = pytest.mark.unit


async def test_timeline_has_every_task_attempt_and_call(
    api: httpx.AsyncClient, dev_stack: DevStack
) -> None:
    run_id = await start_run(api, sleep_chain("waterfall", 2, 0.05))
    await read_events(api, run_id)  # until the run's terminal event
    async with dev_stack.resources.sessions() as session, session.begin():
        started = (await api.get(f"/v1/runs/{run_id}")).json()["created_at"]
        task_id = f"{run_id}.s1"
        common = {"tenant_id": "default", "run_id": run_id, "task_id": task_id, "attempt": 1}
        at = datetime.fromisoformat(started.replace("Z", "+00:00")) + timedelta(seconds=1)
        session.add(
            LLMCallRecord(
                **common, turn=0, agent="triage", provider="replay", model="m1",
                request={}, input_tokens=120, output_tokens=30, cost_usd=0.002,
                latency_ms=250.0, status="ok", started_at=at,
            )
        )  # fmt: skip
        session.add(
            ToolCallRecord(
                **common, turn=0, call_index=0, agent="triage", tool="calculator",
                status="ok", latency_ms=5.0, started_at=at + timedelta(milliseconds=250),
            )
        )  # fmt: skip

    resp = await api.get(f"/v1/runs/{run_id}/timeline")
    assert resp.status_code == 200, resp.text
    timeline = resp.json()
    assert timeline["status"] == "succeeded"
    assert timeline["offset_ms"] == 0
    assert timeline["duration_ms"] > 100  # two 50 ms sleeps, one after the other
    s0, s1 = sorted(timeline["tasks"], key=lambda t: t["node_id"])
    for task in (s0, s1):
        assert task["status"] == "succeeded"
        assert [a["status"] for a in task["attempts"]] == ["succeeded"]
        assert task["duration_ms"] >= 50
    assert s1["offset_ms"] >= s0["offset_ms"] + s0["duration_ms"], "s1 needs s0"
    (llm,) = s1["llm_calls"]
    assert (llm["model"], llm["input_tokens"], llm["output_tokens"]) == ("m1", 120, 30)
    assert llm["duration_ms"] == 250.0
    assert 999 <= llm["offset_ms"] <= 1001
    (call,) = s1["tool_calls"]
    assert call["tool"] == "calculator"
    assert call["offset_ms"] == pytest.approx(llm["offset_ms"] + 250, abs=1)
    assert timeline["totals"] == {
        "tasks": 2, "attempts": 2, "llm_calls": 1, "tool_calls": 1,
        "input_tokens": 120, "output_tokens": 30, "cost_usd": 0.002,
    }  # fmt: skip

    assert (await api.get("/v1/runs/nope/timeline")).status_code == 404


async def test_runs_watch_prints_each_task_and_ends_with_the_result(
    api: httpx.AsyncClient, dev_stack: DevStack
) -> None:
    run_id = await start_run(api, sleep_chain("watched", 2, 0.2))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadenza_cli", "runs", "watch", run_id, "--url", dev_stack.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    progress = err.decode().splitlines()
    assert any("s0" in line and "task.started" in line for line in progress), progress
    assert any("s1" in line and "task.succeeded" in line for line in progress), progress
    assert "run.succeeded" in progress[-1]
    assert json.loads(out) == {"id": run_id, "status": "succeeded", "output": None, "error": None}
