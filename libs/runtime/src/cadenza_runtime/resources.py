"""Everything a service process holds for its lifetime: the bus, the state adapters and the
outbox relay. `cadenza dev` opens ONE of these and hands it to every service."""

from __future__ import annotations

from dataclasses import dataclass

from cadenza_events import Bus, BusSettings, MemoryBroker, Publisher, TopicRegistry, create_bus
from cadenza_state import HotState, ObjectStore, StateRuntime, StateSettings, open_state
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .relay import OutboxRelay


@dataclass
class Resources:
    bus: Bus
    state: StateRuntime
    relay: OutboxRelay

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.state.sessions

    @property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for a lone read outside a transaction (``StateRuntime.reads``)."""
        return self.state.reads

    @property
    def hot(self) -> HotState:
        return self.state.hot

    @property
    def objects(self) -> ObjectStore:
        return self.state.objects

    @property
    def publisher(self) -> Publisher:
        return self.bus.publisher

    @property
    def registry(self) -> TopicRegistry:
        return self.bus.registry

    async def close(self) -> None:
        await self.relay.stop()
        await self.bus.stop()
        await self.state.aclose()


async def open_resources(
    bus_settings: BusSettings | None = None,
    state_settings: StateSettings | None = None,
    *,
    broker: MemoryBroker | None = None,
    start_relay: bool = True,
    outbox_delete_interval_s: float = 1.0,
) -> Resources:
    """Connect to the bus and state (migrating the database), and start the outbox relay.
    ``outbox_delete_interval_s``: how often the rows this process published itself are
    deleted, all together (``OutboxRelay.flush_deletes``)."""
    state = await open_state(state_settings or StateSettings())
    bus = create_bus(bus_settings or BusSettings(), broker)
    try:
        await bus.start()
    except BaseException:
        await state.aclose()
        raise
    relay = OutboxRelay(state.sessions, bus.publisher, delete_interval_s=outbox_delete_interval_s)
    if start_relay:
        await relay.start()
    return Resources(bus=bus, state=state, relay=relay)
