"""A quiet run's SSE stream on the real Redis stays open (issue 11).

The stream used to break after one blocking read without a new event: the Redis client's
socket timeout equalled the XREAD BLOCK time, so the read raised ``TimeoutError`` before
Redis answered "nothing new". The gateway here serves over real HTTP (ASGITransport
buffers whole responses) with a short blocking read and heartbeat, so several silent reads
fit in a fast test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from cadenza_client import RunEvent as StreamedEvent
from cadenza_client.events import SseParser
from cadenza_events import Envelope, RunEvent, Topic
from cadenza_gateway import Gateway, GatewaySettings
from cadenza_runtime import Resources
from support import assert_eventually
from support.auth import TenantKeys

integration_only = pytest.mark.parametrize("stack", ["integration"], indirect=True)

BLOCK_S = 0.5
HEARTBEAT_S = 0.2
# A sleep no worker runs here (none is started): the run stays pending and silent.
QUIET = {"name": "quiet", "tasks": [{"id": "nap", "tool": "sleep", "with": {"seconds": 60}}]}


@dataclass
class StreamLog:
    """What one SSE connection delivered, with when (monotonic seconds since it opened)."""

    opened: float = field(default_factory=time.monotonic)
    heartbeats: list[float] = field(default_factory=list)
    events: list[StreamedEvent] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)

    async def read(self, lines: AsyncIterator[str]) -> None:
        parser = SseParser()
        async for line in lines:
            if line.startswith(":"):
                self.heartbeats.append(time.monotonic() - self.opened)
            elif (event := parser.feed(line)) is not None:
                self.events.append(event)
                self.event_times.append(time.monotonic() - self.opened)


@pytest.fixture
async def gateway_url(resources: Resources, settings: GatewaySettings) -> AsyncIterator[str]:
    quick = settings.model_copy(
        update={"event_stream_block_s": BLOCK_S, "event_stream_heartbeat_s": HEARTBEAT_S}
    )
    gateway = Gateway(resources, quick)  # port 0: any free port
    await gateway.start()
    try:
        yield f"http://127.0.0.1:{gateway.port}"
    finally:
        await gateway.stop()


@integration_only
async def test_a_quiet_stream_stays_open_with_heartbeats_and_still_delivers_events(
    gateway_url: str, resources: Resources
) -> None:
    async with httpx.AsyncClient(
        base_url=gateway_url, auth=TenantKeys(resources), timeout=10
    ) as api:
        created = await api.post("/v1/runs", json={"spec": QUIET, "inputs": {}})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        async with api.stream("GET", f"/v1/runs/{run_id}/events") as resp:
            assert resp.status_code == 200, await resp.aread()
            stream = StreamLog()
            reader = asyncio.create_task(stream.read(resp.aiter_lines()))
            try:

                def open_for(seconds: float) -> bool:
                    if reader.done():
                        pytest.fail(
                            f"the stream closed {time.monotonic() - stream.opened:.2f} s "
                            f"after it opened: {reader.exception()!r}"
                        )
                    return bool(stream.heartbeats) and stream.heartbeats[-1] >= seconds

                def events_seen(n: int) -> list[StreamedEvent]:
                    open_for(0)
                    return stream.events if len(stream.events) >= n else []

                # The gateway's own run.accepted first; then nothing happens to the run.
                (accepted,) = await assert_eventually(lambda: events_seen(1), timeout=10)
                assert accepted.event == "run.accepted"
                quiet_from = stream.event_times[0]

                # Heartbeats keep arriving across several silent blocking reads.
                await assert_eventually(
                    lambda: open_for(quiet_from + 2.5 * BLOCK_S),
                    timeout=10,
                    message="heartbeats did not span 2.5 blocking reads",
                )
                quiet = [t for t in stream.heartbeats if t > quiet_from]
                assert len(quiet) >= 2.5 * BLOCK_S / HEARTBEAT_S - 1
                assert len(stream.events) == 1, "the run was expected to stay quiet"

                # An event published now still reaches this connection.
                event = RunEvent(run_id=run_id, kind="task.started", node_id="nap")
                envelope = Envelope(event, source="/test", plan_id=run_id)
                await resources.publisher.publish(Topic.RUN_EVENTS, envelope)

                _, got = await assert_eventually(
                    lambda: events_seen(2), timeout=10, message="the event never reached the stream"
                )
                assert (got.event, got.data["run_id"], got.data["node_id"]) == (
                    "task.started",
                    run_id,
                    "nap",
                )
                assert not reader.done(), "the stream of a live run must stay open"
            finally:
                reader.cancel()
