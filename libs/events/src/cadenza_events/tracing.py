"""W3C trace context carried in the envelope, so one trace spans every Kafka hop."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from .envelope import Envelope, Message

tracer = trace.get_tracer("cadenza.events")


def inject(env: Envelope[Any]) -> Envelope[Any]:
    """Stamp the current trace context on an envelope that doesn't carry one yet."""
    if env.traceparent:
        return env
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if "traceparent" not in carrier:
        return env
    return env.with_trace(carrier["traceparent"], carrier.get("tracestate"))


def consume_span(env: Envelope[Any], msg: Message, group: str) -> AbstractContextManager[Any]:
    """A CONSUMER span, child of the producer's context carried in the envelope."""
    carrier = {"traceparent": env.traceparent or ""}
    if env.tracestate:
        carrier["tracestate"] = env.tracestate
    ctx = propagate.extract(carrier) if env.traceparent else None
    return tracer.start_as_current_span(
        f"process {msg.topic}",
        context=ctx,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": msg.topic,
            "messaging.consumer.group.name": group,
            "messaging.kafka.destination.partition": msg.partition,
            "messaging.kafka.offset": msg.offset,
            "messaging.message.id": env.id,
            "cloudevents.event_type": env.type,
            "cadenza.tenant_id": env.tenant_id,
            "cadenza.plan_id": env.plan_id or "",
            "cadenza.task_id": env.task_id or "",
        },
    )
