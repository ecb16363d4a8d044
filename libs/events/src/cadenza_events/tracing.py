"""W3C trace context carried in the envelope, so one trace spans every Kafka hop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from .envelope import Envelope, Message

tracer = trace.get_tracer("cadenza.events")


def inject(env: Envelope[Any]) -> Envelope[Any]:
    """Stamp the current trace context on an envelope that doesn't carry one yet."""
    if env.traceparent:
        return env
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:  # no span (tracing off): nothing to carry
        return env
    traceparent, tracestate = _carried(span_context)
    return env.with_trace(traceparent, tracestate)


#: The last span context's carried headers: a plan stamps its 10,000 task.ready events in
#: one span.
_last_carried: tuple[Any, str, str | None] = (None, "", None)


def _carried(span_context: SpanContext) -> tuple[str, str | None]:
    """The W3C headers of a valid span context, written directly: the envelope carries only
    ``traceparent`` and ``tracestate``, which the global propagator would write the same
    way at ~7 µs a call (and a worker's every result has a context of its own)."""
    global _last_carried
    last, traceparent, tracestate = _last_carried
    if span_context is last:
        return traceparent, tracestate
    traceparent = (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )
    tracestate = (
        (span_context.trace_state.to_header() or None) if span_context.trace_state else None
    )
    _last_carried = (span_context, traceparent, tracestate)
    return traceparent, tracestate


def child_span(
    tracer_: trace.Tracer, name: str, attributes: Callable[[], Mapping[str, AttributeValue]]
) -> AbstractContextManager[trace.Span]:
    """A child of the current span — unless the current span is valid but not recorded.

    A child of an unrecorded span is never recorded either (its trace is not sampled: a
    process without an exporter samples nothing), yet creating one — ids, a context, its
    attributes — cost ~5 % of a worker's CPU per no-op task. Then the current span stands in
    for it: its ``set_attribute`` and ``record_exception`` do nothing, and what the block
    publishes carries the same trace (the consumer span's, which continues the producer's).
    ``attributes`` is only called for a span that is made."""
    current = trace.get_current_span()
    if current.get_span_context().is_valid and not current.is_recording():
        return nullcontext(current)
    return tracer_.start_as_current_span(name, attributes=attributes())


#: The tracer provider last looked at, and whether it records nothing.
_provider_checked: tuple[object, bool] = (None, False)


def unrecorded() -> bool:
    """Whether this process records no span at all: no SDK, or the sampler ``always_off``
    that ``setup_tracing`` installs when no exporter is configured."""
    global _provider_checked
    provider = trace.get_tracer_provider()
    checked, answer = _provider_checked
    if provider is checked:
        return answer
    if isinstance(provider, (trace.NoOpTracerProvider, trace.ProxyTracerProvider)):
        answer = True
    else:
        sampler = getattr(provider, "sampler", None)
        answer = sampler is not None and sampler.get_description() == "AlwaysOffSampler"
    _provider_checked = (provider, answer)
    return answer


_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def carried_context(env: Envelope[Any]) -> SpanContext | None:
    """The producer's span context in ``env``'s W3C ``traceparent``, parsed directly (the
    propagators' regular expressions cost ~3.5 µs a call); None if it carries none or an
    invalid one. Marked not sampled: it is only used where nothing is recorded."""
    traceparent = env.traceparent
    if not traceparent or len(traceparent) != 55:
        return None
    parts = traceparent.split("-")
    if len(parts) != 4:
        return None
    version, trace_hex, span_hex, flags = parts
    if version != "00" or len(trace_hex) != 32 or len(span_hex) != 16 or len(flags) != 2:
        return None
    try:
        trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([env.tracestate]) if env.tracestate else None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=_NOT_SAMPLED, trace_state=state
    )


def continued(env: Envelope[Any]) -> AbstractContextManager[Any] | None:
    """In a process that records nothing: the producer's context made current as it is,
    instead of a child span that would never be recorded (an SDK span costs ~10 µs with
    its ids and context; this ~2.5). What the block publishes carries the producer's
    trace, marked not sampled, as with an unrecorded child. None when spans may be recorded
    or ``env`` carries no valid context: then make a span."""
    if not unrecorded():
        return None
    context = carried_context(env)
    if context is None:
        return None
    return trace.use_span(NonRecordingSpan(context), end_on_exit=False)


def consume_span(env: Envelope[Any], msg: Message, group: str) -> AbstractContextManager[Any]:
    """A CONSUMER span, child of the producer's context carried in the envelope."""
    fast = continued(env)
    if fast is not None:
        return fast
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


def context_of(env: Envelope[Any]) -> Any:
    """The producer's trace context carried in ``env`` (None when it carries none)."""
    if not env.traceparent:
        return None
    carrier = {"traceparent": env.traceparent}
    if env.tracestate:
        carrier["tracestate"] = env.tracestate
    return propagate.extract(carrier)


def batch_span(
    group: str, topic: str, items: list[tuple[Message, Envelope[Any]]]
) -> AbstractContextManager[Any]:
    """ONE CONSUMER span for a partition's batch. A batch of one continues its producer's
    trace as before; a larger batch links every producer's context (OpenTelemetry's
    messaging conventions for batch receive), and handlers start per-item spans as
    children of each envelope's own context, so every run's trace stays whole."""
    first_msg, first_env = items[0]
    if len(items) == 1:
        fast = continued(first_env)
        if fast is not None:
            return fast
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": group,
        "messaging.kafka.destination.partition": first_msg.partition,
        "messaging.kafka.offset": first_msg.offset,
        "messaging.batch.message_count": len(items),
    }
    if len(items) == 1:
        attributes |= {
            "messaging.message.id": first_env.id,
            "cloudevents.event_type": first_env.type,
            "cadenza.tenant_id": first_env.tenant_id,
            "cadenza.plan_id": first_env.plan_id or "",
            "cadenza.task_id": first_env.task_id or "",
        }
        return tracer.start_as_current_span(
            f"process {topic}",
            context=context_of(first_env),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
        )
    # Enough to follow (a span with thousands of links is noise); none for a span nobody
    # records.
    linked = items[:128] if not unrecorded() else []
    links = []
    for _, env in linked:
        ctx = context_of(env)
        if ctx is not None:
            span_ctx = trace.get_current_span(ctx).get_span_context()
            if span_ctx.is_valid:
                links.append(trace.Link(span_ctx))
    return tracer.start_as_current_span(
        f"process {topic}", context=None, kind=SpanKind.CONSUMER, attributes=attributes, links=links
    )
