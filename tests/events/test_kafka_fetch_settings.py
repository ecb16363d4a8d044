"""How the Kafka transport asks the broker to hold fetches (unit: the client is a stand-in).

The dispatch path must not let a fetch sit at the broker for Kafka's default 500 ms: the
client keeps one fetch in flight per broker and leaves out of it the partitions whose
fetched records are not all consumed yet, so a backlog on one partition waited behind idle
ones (a 5,000-task fan-out's results stalled 300-400 ms at a time; docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import BusSettings
from cadenza_events import kafka as kafka_module
from cadenza_events.kafka import FETCH_BATCH_BYTES, KafkaConsumerTransport

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
