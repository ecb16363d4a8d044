"""The consumer runtime survives a misbehaving transport (a test double is fine here)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cadenza_events import ConsumerOptions, Envelope, MemoryBus, RunEvent, encode
from cadenza_events.envelope import Message
from cadenza_events.offsets import TopicPartition
from cadenza_events.runner import ConsumerRunner, RebalanceListener
from support import assert_eventually

pytestmark = pytest.mark.unit


class FlakyTransport:
    """Fails every other fetch and the first commits, like a broker that is restarting."""

    def __init__(self, records: list[Message]) -> None:
        self.records = records
        self.fetches = 0
        self.commit_failures = 2
        self.committed: dict[TopicPartition, int] = {}

    async def start(self, listener: RebalanceListener) -> None:
        await listener.on_assigned({("t", 0)})

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        self.fetches += 1
        if self.fetches % 2:
            raise ConnectionError("broker went away")
        out, self.records = self.records[:max_records], self.records[max_records:]
        if not out:
            await asyncio.sleep(0.01)
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.commit_failures:
            self.commit_failures -= 1
            raise ConnectionError("commit failed")
        self.committed.update(offsets)

    async def close(self) -> None:
        return None

    def end_offsets(self) -> dict[TopicPartition, int]:
        raise RuntimeError("metadata unavailable")

    def partition_for(self, topic: str, key: bytes) -> int | None:
        return None


async def test_transport_errors_never_crash_the_consumer() -> None:
    bus = MemoryBus()
    await bus.start()
    records = []
    for i in range(10):
        env = Envelope(payload=RunEvent(run_id=f"p{i}", kind="k"), source="/t", plan_id=f"p{i}")
        key, value, headers = encode(env, f"p{i}")
        records.append(Message("t", 0, i, key, value, tuple(headers)))
    transport = FlakyTransport(records)
    handled: list[str] = []

    async def handle(env: Envelope[Any]) -> None:
        handled.append(env.plan_id or "")

    runner = ConsumerRunner(
        transport,
        group="g",
        handler=handle,
        registry=bus.registry,
        publisher=bus.publisher,
        options=ConsumerOptions(concurrency=3),
        commit_interval_s=0.01,
    )
    await runner.start()
    await assert_eventually(lambda: len(handled) == 10, timeout=10)
    await assert_eventually(lambda: transport.committed == {("t", 0): 10}, timeout=10)
    await runner.stop()
    assert sorted(handled) == sorted(f"p{i}" for i in range(10))


async def test_kafka_ping_refuses_before_start() -> None:
    from cadenza_events.kafka import KafkaBus

    with pytest.raises(RuntimeError, match="not started"):
        await KafkaBus().ping()
