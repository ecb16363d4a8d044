"""The trigger service: the upstream-topic consumer, the scheduler and the retention of their
dedupe ledgers, in one process.

Why its own process (not inside the gateway): consuming is scaled by the consumer group's
partitions and the gateway by HTTP load; a slow upstream burst (or a tenant at its run
limit pausing consumption) must not hold gateway workers; and a gateway restart must not
rebalance upstream consumption. POST /v1/events (in the gateway) goes through the same
``cadenza_triggers`` code, so both ingresses share matching, mapping and dedupe.
"""

from __future__ import annotations

from cadenza_runtime import Resources

from .consumer import TriggerConsumer
from .ledger_retention import LedgerRetention
from .scheduler import Scheduler
from .settings import TriggerSettings


class TriggerService:
    def __init__(self, resources: Resources, settings: TriggerSettings | None = None) -> None:
        self.settings = settings or TriggerSettings()
        self.consumer = TriggerConsumer(resources, self.settings)
        self.scheduler = Scheduler(resources, self.settings)
        self.ledger_retention = LedgerRetention(resources, self.settings)

    async def start(self) -> None:
        if self.settings.consumer_enabled:
            await self.consumer.start()
        if self.settings.scheduler_enabled:
            await self.scheduler.start()
        await self.ledger_retention.start()

    async def stop(self) -> None:
        await self.ledger_retention.stop()
        await self.scheduler.stop()
        await self.consumer.stop()
