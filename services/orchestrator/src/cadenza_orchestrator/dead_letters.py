"""The dead-letter inbox's writer: a small consumer of the ``dlq`` topic that keeps every
dead letter in PostgreSQL (``dead_letters``) for operators to inspect, replay or discard
(``/v1/dead-letters``).

Why a consumer of the topic and not a write where messages are dead-lettered: the bus
library (``libs/events``) stays free of storage (every consumer of every service
dead-letters through it, and some have no database), the topic remains the one place a
dead letter is first written (a database outage cannot block a consumer that is giving up
on a message), and this consumer is idempotent — the original record's
(topic, partition, offset, group) is unique — so at-least-once delivery stores each letter
once.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from cadenza_events import (
    BACKGROUND_FETCH_WAIT_MS,
    Consumer,
    ConsumerOptions,
    DeadLetter,
    Envelope,
    Topic,
)
from cadenza_runtime import Resources, is_outage
from cadenza_state import DeadLetterRecord, DeadLetterStatus
from opentelemetry import trace
from sqlalchemy.dialects import postgresql, sqlite

from . import metrics

log = logging.getLogger("cadenza.orchestrator.dead_letters")
tracer = trace.get_tracer("cadenza.orchestrator")


class DeadLetterRecorder:
    def __init__(self, resources: Resources, group: str | None = None) -> None:
        self.resources = resources
        self.group = group or f"{resources.registry.prefix}dead-letter-recorder"
        self._consumer: Consumer | None = None

    async def handle(self, env: Envelope[Any]) -> None:
        letter = env.payload
        if not isinstance(letter, DeadLetter):
            log.warning("ignoring %s on the dead-letter topic", env.type)
            return
        headers = letter.headers
        values = {
            "tenant_id": env.tenant_id,
            "original_topic": letter.original_topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "consumer_group": letter.consumer_group,
            "key": letter.key,
            "headers": headers,
            "value": base64.b64decode(letter.value_b64),
            "reason": letter.reason[:4000],
            "error_code": letter.error_code[:255],
            "attempts": letter.attempts,
            "event_type": headers.get("ce_type"),
            "run_id": env.plan_id or headers.get("ce_planid"),
            "task_id": env.task_id or headers.get("ce_taskid"),
            "failed_at": letter.failed_at,
            "status": DeadLetterStatus.PENDING.value,
        }
        table: Any = DeadLetterRecord.__table__
        with tracer.start_as_current_span(
            "dead_letters.record",
            attributes={
                "cadenza.dlq.topic": letter.original_topic,
                "cadenza.dlq.code": letter.error_code,
            },
        ):
            async with self.resources.sessions() as session, session.begin():
                dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
                await session.execute(dialect.insert(table).values(values).on_conflict_do_nothing())
        metrics.DEAD_LETTERS_RECORDED.labels(letter.original_topic).inc()
        log.warning(
            "dead letter from %s (%s): %s",
            letter.original_topic,
            letter.error_code,
            letter.reason[:200],
        )

    async def start(self) -> None:
        if self._consumer is not None:
            return
        # A dead letter may wait half a second to be recorded: idle, two fetches a second.
        options = ConsumerOptions(
            concurrency=1, is_outage=is_outage, fetch_wait_ms=BACKGROUND_FETCH_WAIT_MS
        )
        consumer = self.resources.bus.consumer([Topic.DLQ], self.group, self.handle, options)
        await consumer.start()
        self._consumer = consumer
        log.info("recording dead letters (group %s)", self.group)

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
