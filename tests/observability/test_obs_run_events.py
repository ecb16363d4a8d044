"""The live event stream: sequence numbers, resume without loss, late clients, WebSocket."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import websockets
from cadenza_cli.dev import DevStack
from cadenza_runtime import RunEventLog
from conftest import read_events, sleep_chain, start_run
from prometheus_client import REGISTRY
from support import assert_eventually
from support.auth import issue_key

pytestmark = pytest.mark.unit


async def test_resume_after_disconnect_replays_exactly_the_missed_events(
    api: httpx.AsyncClient, dev_stack: DevStack
) -> None:
    run_id = await start_run(api, sleep_chain("resume", 5, 0.15))
    log = RunEventLog(dev_stack.resources.hot)

    first = await read_events(api, run_id, limit=3)  # then the client drops
    last_seen = int(first[-1].id or 0)
    # Events keep coming while it is away: wait until several were recorded.
    await assert_eventually(lambda: _count_after(log, run_id, last_seen, 4), timeout=10)
    missed = [e.seq for e in await log.read(run_id, last_seen)]

    resumed = await read_events(api, run_id, last_event_id=last_seen)
    everything = await read_events(api, run_id)  # a late client, after the run ended

    ids = [int(e.id or 0) for e in everything]
    assert ids == list(range(1, len(ids) + 1)), "sequence numbers are 1..N without gaps"
    assert everything[-1].event == "run.succeeded"
    assert [e.id for e in first + resumed] == [e.id for e in everything], "nothing lost or doubled"
    assert [e.data for e in first + resumed] == [e.data for e in everything]
    assert [int(e.id or 0) for e in resumed][: len(missed)] == missed
    kinds = [e.event for e in everything]
    assert kinds[0] == "run.accepted"
    assert kinds.count("task.started") == 5
    assert kinds.count("task.succeeded") == 5
    body = everything[-1].data
    assert body["run_id"] == run_id
    assert body["seq"] == ids[-1]
    assert body["status"] == "succeeded"


async def _count_after(log: RunEventLog, run_id: str, after: int, n: int) -> bool:
    return len(await log.read(run_id, after)) >= n


async def test_a_client_connecting_early_gets_live_events_until_the_terminal_one(
    api: httpx.AsyncClient,
) -> None:
    run_id = await start_run(api, sleep_chain("live", 2, 0.1))
    events = await read_events(api, run_id)
    assert events[-1].event == "run.succeeded"
    node_events = [(e.data["node_id"], e.event) for e in events if e.data.get("node_id")]
    assert ("s0", "task.started") in node_events
    assert ("s1", "task.succeeded") in node_events
    assert node_events.index(("s0", "task.succeeded")) < node_events.index(("s1", "task.ready"))


async def test_a_long_stream_counts_as_fast_in_the_latency_histogram(
    api: httpx.AsyncClient,
) -> None:
    """The latency histogram measures time to the first byte: a stream that stays open for
    the whole run must not look like a slow request."""
    labels = {"method": "GET", "route": "/v1/runs/{run_id}/events"}

    def observed() -> tuple[float, float]:
        total = REGISTRY.get_sample_value("cadenza_gateway_request_duration_seconds_sum", labels)
        count = REGISTRY.get_sample_value("cadenza_gateway_request_duration_seconds_count", labels)
        return total or 0.0, count or 0.0

    before_sum, before_count = observed()
    run_id = await start_run(api, sleep_chain("long", 4, 0.25))
    opened = time.perf_counter()
    events = await read_events(api, run_id)
    streamed = time.perf_counter() - opened
    assert events[-1].event == "run.succeeded"
    assert streamed >= 0.9  # four 0.25 s tasks, one after the other
    # The middleware observes once the app returns, just after the client saw the end.
    await assert_eventually(lambda: observed()[1] - before_count == 1, timeout=5)
    after_sum, _ = observed()
    assert after_sum - before_sum < streamed / 2


async def test_websocket_carries_the_same_events_and_resumes_with_after(
    api: httpx.AsyncClient, dev_stack: DevStack
) -> None:
    run_id = await start_run(api, sleep_chain("ws", 2, 0.05))
    sse = await read_events(api, run_id)
    ws_url = dev_stack.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/events"
    async with websockets.connect(ws_url + "?after=2") as ws:
        messages = [json.loads(m) async for m in ws]
    assert [m["id"] for m in messages] == [int(e.id or 0) for e in sse[2:]]
    assert [m["event"] for m in messages] == [e.event for e in sse[2:]]
    assert messages[-1]["data"] == sse[-1].data


async def test_unknown_run_and_bad_last_event_id_are_problems(
    api: httpx.AsyncClient, dev_stack: DevStack
) -> None:
    missing = await api.get("/v1/runs/nope/events")
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("run-not-found")
    run_id = await start_run(api, sleep_chain("bad", 1, 0.01))
    bad = await api.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "header.Last-Event-ID"
    other = {"Authorization": f"Bearer {await issue_key(dev_stack.resources, 'other')}"}
    other_tenant = await api.get(f"/v1/runs/{run_id}/events", headers=other)
    assert other_tenant.status_code == 404
    ws_url = dev_stack.url.replace("http://", "ws://") + "/v1/runs/nope/events"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused_unknown:
        async with websockets.connect(ws_url):
            pass
    # The handshake is refused with the same problem as the SSE route, not a bare 403.
    assert refused_unknown.value.response.status_code == 404
    assert b"run-not-found" in refused_unknown.value.response.body
    # The WebSocket checks the credential like every route: another tenant's run is unknown.
    ws_run = dev_stack.url.replace("http://", "ws://") + f"/v1/runs/{run_id}/events"
    for refused, status in ((other, 404), ({"Authorization": "Bearer cdz_0123456789ab_nope"}, 401)):
        with pytest.raises(websockets.exceptions.InvalidStatus) as denied:
            async with websockets.connect(ws_run, additional_headers=refused):
                pass
        assert denied.value.response.status_code == status
