"""The trigger consumer: the upstream topics of every enabled trigger, one consumer group.

Each record is read as a CloudEvent (binary, structured, or a plain JSON record), matched
against the triggers of its topic, mapped to inputs and started exactly once
(``cadenza_triggers.start_for_event``). Poison (undecodable, a failing filter, a mapping
the workflow refuses) is dead-lettered with the reason by the consumer runtime; an outage
(database away) pauses; a tenant at its run limit makes its events wait (backpressure).
Trigger definitions are re-read every ``reload_interval_s``; a change of topics
re-subscribes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cadenza_events import (
    CadenzaError,
    Consumer,
    ConsumerOptions,
    DecodeError,
    Envelope,
    Message,
)
from cadenza_events.bus import Decoder
from cadenza_runtime import Resources, is_outage
from cadenza_runtime.periodic import Periodic
from cadenza_state import RunRecord, RunStatus
from cadenza_triggers import CloudEvent, SpecCache, Trigger, kafka_decoder, load_triggers
from cadenza_triggers import start_for_event as start_run_for_event
from opentelemetry import trace
from sqlalchemy import func, select

from . import metrics
from .settings import TriggerSettings

log = logging.getLogger("cadenza.trigger")
tracer = trace.get_tracer("cadenza.trigger")
ACTIVE = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
ACTOR = "trigger"


class TriggerConsumer:
    def __init__(self, resources: Resources, settings: TriggerSettings) -> None:
        self._resources = resources
        self._settings = settings
        self._by_topic: dict[str, list[Trigger]] = {}
        self._topics: tuple[str, ...] = ()
        self._consumer: Consumer | None = None
        self._cache = SpecCache()
        # A failed reload keeps the triggers already known; the next one tries again.
        self._reloader = Periodic(
            "trigger-reload",
            self.reload,
            settings.reload_interval_s,
            log=log,
            passes=metrics.RELOADS,
        )
        self._lock = asyncio.Lock()

    @property
    def topics(self) -> tuple[str, ...]:
        return self._topics

    async def start(self) -> None:
        await self._reloader.run_once()  # subscribed once this returns, unless it failed
        self._reloader.start()

    async def stop(self) -> None:
        await self._reloader.stop()
        async with self._lock:
            if self._consumer is not None:
                await self._consumer.stop()
                self._consumer = None

    async def reload(self) -> None:
        """Re-read the triggers in force; re-subscribe when their topics changed."""
        async with self._resources.sessions() as session, session.begin():
            triggers = await load_triggers(session)
        by_topic: dict[str, list[Trigger]] = {}
        for trigger in triggers:
            if trigger.spec.enabled:
                for topic in trigger.spec.topics:
                    by_topic.setdefault(topic, []).append(trigger)
        self._by_topic = by_topic
        metrics.TRIGGERS.set(sum(1 for t in triggers if t.spec.enabled and t.spec.topics))
        topics = tuple(sorted(by_topic))
        if topics != self._topics:
            await self._subscribe(topics)

    async def _subscribe(self, topics: tuple[str, ...]) -> None:
        async with self._lock:
            if self._consumer is not None:
                await self._consumer.stop()  # commits what it handled
                self._consumer = None
            self._topics = topics
            if not topics:
                return
            log.info("consuming %s", ", ".join(topics))
            self._consumer = self._resources.bus.topic_consumer(
                list(topics),
                self._settings.group,
                self.handle,
                self._decoder(),
                ConsumerOptions(concurrency=self._settings.concurrency, is_outage=is_outage),
            )
            await self._consumer.start()

    def _plain_type(self, topic: str) -> str | None:
        for trigger in self._by_topic.get(topic, []):
            if trigger.spec.plain_type:
                return trigger.spec.plain_type
        return None

    def _decoder(self) -> Decoder:
        """The CloudEvents decoder, counting what it refuses (the runner dead-letters it)."""
        decode = kafka_decoder(self._plain_type)

        def counting(message: Message) -> Envelope[Any]:
            try:
                return decode(message)
            except DecodeError:
                metrics.EVENTS.labels("*", "*", "dead_lettered").inc()
                raise

        return counting

    async def handle(self, env: Envelope[Any]) -> None:
        event: CloudEvent = env.payload
        assert event.kafka is not None
        metrics.EVENTS.labels("*", "*", "consumed").inc()
        started_any = False
        for trigger in list(self._by_topic.get(event.kafka["topic"], [])):
            try:
                started_any |= await self._apply(trigger, event)
            except CadenzaError as exc:
                if not exc.retryable:
                    metrics.EVENTS.labels(trigger.tenant_id, trigger.name, "dead_lettered").inc()
                raise
        if started_any:
            self._resources.relay.notify()

    async def _apply(self, trigger: Trigger, event: CloudEvent) -> bool:
        if not trigger.matches(event):
            return False
        labels = (trigger.tenant_id, trigger.name)
        metrics.EVENTS.labels(*labels, "matched").inc()
        await self._wait_for_capacity(trigger.tenant_id)
        with tracer.start_as_current_span(
            "cadenza.trigger.start",
            attributes={
                "cadenza.tenant_id": trigger.tenant_id,
                "cadenza.trigger": trigger.name,
                "cloudevents.event_id": event.id,
                "cloudevents.event_source": event.source,
                "cloudevents.event_type": event.type,
            },
        ) as span:
            started = await start_run_for_event(
                sessions=self._resources.sessions,
                registry=self._resources.registry,
                trigger=trigger,
                event=event,
                cache=self._cache,
                actor=ACTOR,
            )
            span.set_attribute("cadenza.run_id", started.run_id)
            span.set_attribute("cadenza.duplicate", started.duplicate)
        metrics.EVENTS.labels(*labels, "deduplicated" if started.duplicate else "started").inc()
        return not started.duplicate

    async def _wait_for_capacity(self, tenant: str) -> None:
        """Backpressure: hold this event (and so the partition's commits) while the tenant
        is at its limit of unfinished runs — never drop or fail it."""
        limit = self._settings.tenant_max_active_runs.get(tenant, self._settings.max_active_runs)
        if not limit:
            return
        waiting = False
        try:
            while True:
                async with self._resources.sessions() as session:
                    active = await session.scalar(
                        select(func.count())
                        .select_from(RunRecord)
                        .where(RunRecord.tenant_id == tenant, RunRecord.status.in_(ACTIVE))
                    )
                if (active or 0) < limit:
                    return
                if not waiting:
                    waiting = True
                    metrics.BACKPRESSURE.labels(tenant).inc()
                    log.info(
                        "tenant %s has %s unfinished runs (limit %d): waiting",
                        tenant,
                        active,
                        limit,
                    )
                await asyncio.sleep(self._settings.backpressure_poll_s)
        finally:
            if waiting:
                metrics.BACKPRESSURE.labels(tenant).dec()
