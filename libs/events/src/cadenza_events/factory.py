"""Pick the bus implementation from settings (kafka in production, memory in dev)."""

from __future__ import annotations

from .bus import Bus
from .memory import MemoryBroker, MemoryBus
from .settings import BusSettings


def create_bus(settings: BusSettings | None = None, broker: MemoryBroker | None = None) -> Bus:
    settings = settings or BusSettings()
    if settings.backend == "memory":
        return MemoryBus(settings, broker)
    from .kafka import KafkaBus  # imported lazily: dev mode never loads aiokafka

    return KafkaBus(settings)
