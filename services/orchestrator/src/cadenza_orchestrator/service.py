"""The orchestrator service: the run consumer, the sweeper and retention on shared
``Resources``."""

from __future__ import annotations

import logging
from datetime import datetime

from cadenza_events import Consumer, ConsumerOptions, RetryPolicy, Topic
from cadenza_runtime import Resources, is_outage
from cadenza_runtime.periodic import Periodic

from .dead_letters import DeadLetterRecorder
from .graph import GraphCache
from .handlers import RunHandlers
from .retention import Pruned, Retention
from .settings import OrchestratorSettings
from .sweeper import Sweeper

log = logging.getLogger("cadenza.orchestrator")


class Orchestrator:
    """Expands runs into tasks, moves them through the state machine on every result and
    re-dispatches tasks whose worker vanished.

    ``Orchestrator(resources, settings)``; ``await start()`` joins the consumer group
    ``settings.group`` on ``plan.requested`` + ``task.result`` and starts the sweeper;
    joins ``<prefix>dead-letter-recorder`` on ``dlq`` (the dead-letter inbox);
    ``await stop()`` stops them (in-flight events finish first).
    """

    def __init__(self, resources: Resources, settings: OrchestratorSettings | None = None) -> None:
        self.resources = resources
        self.settings = settings or OrchestratorSettings()
        self.graphs = GraphCache()
        self.handlers = RunHandlers(resources, self.settings, self.graphs)
        self.sweeper = Sweeper(
            resources,
            self.settings,
            self.graphs,
            self.handlers.after_commit,
            self.sweeps,
            turns=self.handlers.turns,
            forget=self.handlers.memory.forget,
        )
        self.retention = Retention(resources.state, self.settings, self.sweeps)
        self.dead_letters = DeadLetterRecorder(resources)
        self._consumer: Consumer | None = None
        self._sweeping: Periodic | None = None
        self._pruning: Periodic | None = None
        self._options = ConsumerOptions(
            concurrency=self.settings.consumer_concurrency,
            retry=RetryPolicy(
                max_attempts=self.settings.handler_max_attempts,
                initial_backoff_s=0.1,
                max_backoff_s=5.0,
            ),
            is_outage=is_outage,
            batches_in_flight=self.settings.batches_in_flight,
            # A run's plan, commands and results in one process: its memory is used.
            co_partitioned=True,
            on_revoked=self.handlers.revoked,
            on_assigned=self.handlers.assigned,
        )

    async def start(self) -> None:
        self.handlers.holds = self.holds
        # The timeline waits for later commits' records and leaves with them (one request).
        self.resources.relay.linger(
            [self.resources.registry.name(Topic.RUN_EVENTS)], self.settings.timeline_linger_s
        )
        self._consumer = self.resources.bus.batch_consumer(
            [Topic.PLAN_REQUESTED, Topic.TASK_RESULT],
            self.settings.group,
            self.handlers.consume_batch,
            self._options,
        )
        await self._consumer.start()
        await self.dead_letters.start()
        self._sweeping = self.sweeper.periodic()
        self._sweeping.start()
        if self.settings.retention_days:
            self._pruning = self.retention.periodic()
            self._pruning.start()
        log.info("orchestrator started (group %s)", self.settings.group)

    async def stop(self) -> None:
        for periodic in (self._sweeping, self._pruning):
            if periodic is not None:
                await periodic.stop()
        self._sweeping = self._pruning = None
        await self.dead_letters.stop()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        # The last batches' sends and hot statuses, as long as a batch may take to finish.
        await self.handlers.settle(timeout_s=self._options.shutdown_grace_s)
        log.info("orchestrator stopped")

    def holds(self, run_id: str) -> bool | None:
        """Whether this process holds the run's ``task.result`` partition (co-partitioned:
        its plan and commands too); None while not consuming or the partitions are not
        known yet."""
        if self._consumer is None:
            return None
        return self._consumer.holds_key(Topic.TASK_RESULT, run_id)

    def sweeps(self, run_id: str) -> bool:
        """Whether this orchestrator's sweeper (and retention) looks at the run: the member
        of the group that holds the run's ``task.result`` partition (it applies the run's
        results and, co-partitioned, its plan and commands) does; the others leave it. Not consuming
        (tools, tests) or the partitions not known yet: it looks, and the run's lock keeps
        two sweepers from dispatching one attempt twice."""
        return self.holds(run_id) is not False

    async def sweep_once(self) -> int:
        """One sweeper pass (tests and operators); returns the tasks it acted on."""
        return await self.sweeper.sweep_once()

    async def prune_once(self, now: datetime | None = None) -> Pruned:
        """One retention pass (tests and operators), as if at ``now``."""
        return await self.retention.prune_once(now)
