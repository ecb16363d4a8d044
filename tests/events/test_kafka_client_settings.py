"""How the Kafka clients are set up (unit: the clients are stand-ins).

Fetches: the dispatch path must not let a fetch sit at the broker for Kafka's default 500 ms:
the client keeps one fetch in flight per broker and leaves out of it the partitions whose
fetched records are not all consumed yet, so a backlog on one partition waited behind idle
ones (a 5,000-task fan-out's results stalled 300-400 ms at a time; docs/benchmarks.md).

Produce batches: the producer holds one pending batch per partition and makes a sender wait
once it is full, so its size bounds how many records leave per round trip."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import BusSettings
from cadenza_events import kafka as kafka_module
from cadenza_events.kafka import FETCH_BATCH_BYTES, KafkaConsumerTransport, KafkaPublisher

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
