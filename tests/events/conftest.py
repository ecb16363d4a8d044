from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from cadenza_events import Bus, BusSettings, MemoryBus


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(
    request: pytest.FixtureRequest, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Bus]:
    """The same suite runs against the in-process bus and a real Kafka broker."""
    settings = BusSettings(
        backend=request.param,
        topic_prefix=f"{unique_id}.",
        partitions=3,
        commit_interval_s=0.05,
        session_timeout_ms=6000,
    )
    if request.param == "memory":
        impl: Bus = MemoryBus(settings)
    else:
        require_services("kafka")
        from cadenza_events.kafka import KafkaBus

        impl = KafkaBus(settings)
    await impl.start()
    yield impl
    await impl.stop()
    if request.param == "kafka":
        await impl.delete_topics()  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("bus") == "memory":
            item.add_marker(pytest.mark.unit)
