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


class OnceTransport(FlakyTransport):
    """Hands its records over once, with no failures."""

    def __init__(self, records: list[Message]) -> None:
        super().__init__(records)
        self.commit_failures = 0

    async def fetch(self, max_records: int, timeout_s: float) -> list[Message]:
        out, self.records = self.records[:max_records], self.records[max_records:]
        if not out:
            await asyncio.sleep(0.01)
        return out


@pytest.mark.parametrize("order_header", [None, "ce_taskid"])
async def test_order_header_orders_by_it_instead_of_the_key(order_header: str | None) -> None:
    """A run's task.ready share one key (one worker fetches them together); ordered by the
    task id header, only a task's own attempts wait for each other."""
    bus = MemoryBus()
    await bus.start()
    records = []
    for offset, (task, attempt) in enumerate([("a", 1), ("b", 1), ("c", 1), ("c", 2)]):
        env = Envelope(
            payload=RunEvent(run_id="r", kind="k"),
            source="/t",
            plan_id="r",
            task_id=task,
            attempt=attempt,
        )
        key, value, headers = encode(env, "r")  # every record: the run's key
        records.append(Message("t", 0, offset, key, value, tuple(headers)))
    started: list[tuple[str, int]] = []
    gates = {(t, a): asyncio.Event() for t, a in [("a", 1), ("b", 1), ("c", 1), ("c", 2)]}

    async def handle(env: Envelope[Any]) -> None:
        attempt = (env.task_id or "", env.attempt or 0)
        started.append(attempt)
        await gates[attempt].wait()

    runner = ConsumerRunner(
        OnceTransport(records),
        group="g",
        handler=handle,
        registry=bus.registry,
        publisher=bus.publisher,
        options=ConsumerOptions(concurrency=8, order_header=order_header),
        commit_interval_s=0.01,
    )
    await runner.start()
    try:
        if order_header is None:  # one key: one after another
            await assert_eventually(lambda: started == [("a", 1)], timeout=5)
            gates["a", 1].set()
            await assert_eventually(lambda: started == [("a", 1), ("b", 1)], timeout=5)
        else:  # side by side, but attempt 2 of c waits for attempt 1
            await assert_eventually(lambda: started == [("a", 1), ("b", 1), ("c", 1)], timeout=5)
            for _ in range(10):  # a few turns of the loop: what was scheduled has started
                await asyncio.sleep(0)
            assert ("c", 2) not in started
            gates["c", 1].set()
            await assert_eventually(lambda: ("c", 2) in started, timeout=5)
    finally:
        for gate in gates.values():
            gate.set()
        await runner.stop()
