"""An idle dispatch-path consumer lets the broker hold its fetches long (few idle round
trips) without delaying a record, and goes back to short holds while fetched records wait
to be handled (the stall the short hold prevents). On a real broker: the adapter wraps
aiokafka's fetcher (``cadenza_events.kafka._hold_idle_fetches``), so this also fails if a
new aiokafka version changes what it wraps."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from cadenza_events import BusSettings, Envelope, Topic
from cadenza_events.kafka import KafkaBus
from cadenza_events.payloads import RunEvent
from prometheus_client import REGISTRY
from support import assert_eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IDLE_WAIT_MS = 1_000


@pytest.fixture
async def kafka(unique_id: str, require_services: Callable[..., None]) -> AsyncIterator[KafkaBus]:
    require_services("kafka")
    bus = KafkaBus(
        BusSettings(
            topic_prefix=f"{unique_id}.",
            partitions=3,
            commit_interval_s=0.05,
            session_timeout_ms=6000,
            idle_fetch_wait_ms=IDLE_WAIT_MS,
        )
    )
    await bus.start()
    yield bus
    await bus.stop()
    await bus.delete_topics()


def fetches(group: str, mode: str) -> float:
    value = REGISTRY.get_sample_value(
        "cadenza_bus_fetch_requests_total", {"group": group, "mode": mode}
    )
    return value or 0.0


def event(n: int) -> Envelope[Any]:
    return Envelope(
        payload=RunEvent(run_id=f"run-{n % 7}", kind="test", data={"n": n}),
        source="/test",
        tenant_id="t",
        plan_id=f"run-{n % 7}",
    )


async def test_an_idle_consumer_holds_its_fetches_long_and_still_gets_a_record_at_once(
    kafka: KafkaBus, unique_id: str
) -> None:
    handled: dict[int, float] = {}

    async def handle(env: Envelope[Any]) -> None:
        handled[env.payload.data["n"]] = time.monotonic()

    consumer = kafka.consumer([Topic.RUN_EVENTS], f"{unique_id}-g", handle)
    group = kafka.registry.group(f"{unique_id}-g")
    await consumer.start()
    try:
        await kafka.publisher.publish(Topic.RUN_EVENTS, event(0))
        await assert_eventually(lambda: 0 in handled, message="the first record never came")

        # Idle for 3 s: held up to 1 s each, a handful of fetches (at the 50 ms busy hold,
        # about sixty), and every one of them idle.
        idle, busy = fetches(group, "idle"), fetches(group, "busy")
        await asyncio.sleep(3)
        idle_fetches = fetches(group, "idle") - idle
        assert 1 <= idle_fetches <= 8, idle_fetches
        assert fetches(group, "busy") == busy

        # A record published while an idle fetch is held answers it at once: the hold
        # costs no latency (a fetch answered only when its hold ran out would take ~0.5 s
        # on average).
        delays = []
        for n in range(1, 6):
            sent = time.monotonic()
            await kafka.publisher.publish(Topic.RUN_EVENTS, event(n))
            await assert_eventually(lambda n=n: n in handled, timeout=10)
            delays.append(handled[n] - sent)
            await asyncio.sleep(0.3)
        assert statistics.median(delays) < 0.2, delays
    finally:
        await consumer.stop()


async def test_fetches_go_back_to_short_holds_while_fetched_records_wait(
    kafka: KafkaBus, unique_id: str
) -> None:
    count = 600
    handled: set[int] = set()

    async def handle(env: Envelope[Any]) -> None:
        await asyncio.sleep(0.002)  # slow enough that fetched records wait their turn
        handled.add(env.payload.data["n"])

    await kafka.publisher.publish_many([(Topic.RUN_EVENTS, event(n)) for n in range(count)])
    group = kafka.registry.group(f"{unique_id}-backlog")
    busy = fetches(group, "busy")
    consumer = kafka.consumer([Topic.RUN_EVENTS], f"{unique_id}-backlog", handle)
    await consumer.start()
    try:
        await assert_eventually(lambda: len(handled) == count, timeout=60)
    finally:
        await consumer.stop()
    assert fetches(group, "busy") > busy
