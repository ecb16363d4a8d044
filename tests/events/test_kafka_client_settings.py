"""How the Kafka clients are set up (unit: the clients are stand-ins).

Fetches: the dispatch path must not let a fetch sit at the broker for Kafka's default 500 ms:
the client keeps one fetch in flight per broker and leaves out of it the partitions whose
fetched records are not all consumed yet, so a backlog on one partition waited behind idle
ones (a 5,000-task fan-out's results stalled 300-400 ms at a time; docs/benchmarks.md).

Produce batches: the producer holds one pending batch per partition and makes a sender wait
once it is full, so its size bounds how many records leave per round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cadenza_events import BusSettings
from cadenza_events import kafka as kafka_module
from cadenza_events.kafka import (
    FETCH_BATCH_BYTES,
    SENDER_TURN_EVERY,
    KafkaConsumerTransport,
    KafkaPublisher,
)

pytestmark = pytest.mark.unit


class _Consumer:
    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        _Consumer.made.append(kwargs)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        pass

    async def start(self) -> None:
        pass


async def _options(monkeypatch: pytest.MonkeyPatch, settings: BusSettings, wait: int) -> Any:
    _Consumer.made.clear()
    monkeypatch.setattr(kafka_module, "AIOKafkaConsumer", _Consumer)
    transport = KafkaConsumerTransport(settings, ["t"], "g", fetch_wait_ms=wait)
    await transport.start(listener=None)  # type: ignore[arg-type]
    return _Consumer.made[-1]


async def test_a_dispatch_fetch_is_answered_at_once_and_held_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = await _options(monkeypatch, BusSettings(), 0)
    assert (made["fetch_min_bytes"], made["fetch_max_wait_ms"]) == (1, 50)
    made = await _options(monkeypatch, BusSettings(fetch_max_wait_ms=20), 0)
    assert made["fetch_max_wait_ms"] == 20


async def test_a_consumer_that_lets_fetches_wait_gathers_up_to_its_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = await _options(monkeypatch, BusSettings(), 200)
    assert (made["fetch_min_bytes"], made["fetch_max_wait_ms"]) == (FETCH_BATCH_BYTES, 200)


class _Producer:
    made: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        _Producer.made.append(kwargs)

    async def start(self) -> None:
        pass


async def test_the_producer_builds_large_batches_and_sends_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_module, "AIOKafkaProducer", _Producer)
    settings = BusSettings()
    await KafkaPublisher(settings, registry=None).start()  # type: ignore[arg-type]
    made = _Producer.made[-1]
    assert (made["max_batch_size"], made["linger_ms"]) == (512 * 1024, 0)
    assert (made["acks"], made["enable_idempotence"]) == ("all", True)
    with pytest.raises(ValueError, match="producer_batch_bytes"):
        BusSettings(producer_batch_bytes=2 * 1024 * 1024)  # over the broker's message limit


class _SendingProducer:
    """``send`` appends (as aiokafka's does, without yielding) and returns the record's
    future; ``sender`` stands for the producer's sender task: it notes how many records
    had been appended each time the event loop ran it."""

    def __init__(self) -> None:
        self.appended = 0
        self.seen: list[int] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        self.appended += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def sender(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.seen.append(self.appended)
            await asyncio.sleep(0)


async def test_a_large_publish_lets_the_sender_run_while_it_appends() -> None:
    """A plan's thousands of task.ready: the first batches leave while the rest are
    appended, not after the last (the sender gets a turn every SENDER_TURN_EVERY)."""
    publisher = KafkaPublisher(BusSettings(), registry=None)  # type: ignore[arg-type]
    producer = _SendingProducer()
    publisher._producer = producer  # type: ignore[assignment]
    stop = asyncio.Event()
    sender = asyncio.create_task(producer.sender(stop))
    await asyncio.sleep(0)  # the sender is waiting for records, as aiokafka's does
    total = 4 * SENDER_TURN_EVERY + 10
    await publisher.publish_raw_many([("t", b"k", b"v", [])] * total)
    stop.set()
    await sender
    during = sorted({n for n in producer.seen if 0 < n < total})
    assert during == [SENDER_TURN_EVERY * i for i in range(1, 5)]  # a turn every 64


class _State:
    def __init__(self, *, paused: bool = False, positioned: bool = True) -> None:
        self.paused = paused
        self.has_valid_position = positioned


class _Assignment:
    def __init__(self, states: dict[str, _State]) -> None:
        self.tps = list(states)
        self._states = states

    def state_value(self, tp: str) -> _State:
        return self._states[tp]


class _Fetcher:
    """What ``_hold_idle_fetches`` reads of aiokafka's fetcher: the records not consumed
    yet, the hold the next requests get, and the per-round request builder."""

    def __init__(self) -> None:
        self._records: dict[str, object] = {}
        self._fetch_max_wait_ms = 50
        self.holds: list[int] = []

    def _get_actions_per_node(self, assignment: Any) -> tuple[list[Any], ...]:
        self.holds.append(self._fetch_max_wait_ms)
        return ([("node", "request")], {}, 0.1, False, [])


@pytest.mark.parametrize(
    ("records", "states", "hold"),
    [
        ({}, {"a": _State(), "b": _State()}, 500),  # nothing waits: every partition fetched
        ({"a": object()}, {"a": _State(), "b": _State()}, 50),  # a's records wait their turn
        ({}, {"a": _State(paused=True), "b": _State()}, 50),  # a paused: left out
        ({}, {"a": _State(positioned=False), "b": _State()}, 50),  # a being reset: left out
    ],
)
def test_a_fetch_is_held_long_only_when_it_names_every_partition(
    records: dict[str, object], states: dict[str, _State], hold: int
) -> None:
    fetcher = _Fetcher()
    fetcher._records = records
    consumer = type("Consumer", (), {"_fetcher": fetcher})()
    kafka_module._hold_idle_fetches(consumer, "g-unit", idle_ms=500, busy_ms=50)  # type: ignore[arg-type]
    planned = fetcher._get_actions_per_node(_Assignment(states))
    assert fetcher.holds == [hold]
    assert planned[0] == [("node", "request")]  # the client's own plan, unchanged


def test_a_fetcher_without_what_is_wrapped_keeps_kafkas_behaviour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = type("Consumer", (), {"_fetcher": object()})()
    kafka_module._hold_idle_fetches(consumer, "g-unit", idle_ms=500, busy_ms=50)  # type: ignore[arg-type]
    assert "idle fetches are not held longer" in caplog.text
