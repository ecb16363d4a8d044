"""``inject`` stamps each envelope with the trace context current when it is called."""

from __future__ import annotations

import pytest
from cadenza_events import Envelope, RunEvent
from cadenza_events.tracing import inject
from opentelemetry.sdk.trace import TracerProvider

pytestmark = pytest.mark.unit


def _env() -> Envelope[RunEvent]:
    return Envelope(payload=RunEvent(run_id="r", kind="run.started"), source="/t", tenant_id="a")


def _span_ids(traceparent: str | None) -> tuple[str, str]:
    assert traceparent is not None
    _version, trace_id, span_id, _flags = traceparent.split("-")
    return trace_id, span_id


def test_each_span_stamps_its_own_context_and_no_span_stamps_none() -> None:
    tracer = TracerProvider().get_tracer("test")  # an SDK tracer, not the global no-op
    assert inject(_env()).traceparent is None
    with tracer.start_as_current_span("first") as first:
        a, b = inject(_env()), inject(_env())  # the second one from the cached carrier
        with tracer.start_as_current_span("child") as child:
            c = inject(_env())
        d = inject(_env())  # back in the first span after the child ended
    with tracer.start_as_current_span("second") as second:
        e = inject(_env())
    assert inject(_env()).traceparent is None

    def ids(span: object) -> tuple[str, str]:
        ctx = span.get_span_context()  # type: ignore[attr-defined]
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    assert [_span_ids(x.traceparent) for x in (a, b, c, d, e)] == [
        ids(first), ids(first), ids(child), ids(first), ids(second)
    ]  # fmt: skip


def test_an_envelope_keeps_the_context_it_already_carries() -> None:
    tracer = TracerProvider().get_tracer("test")
    carried = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with tracer.start_as_current_span("other"):
        assert inject(_env().with_trace(carried, None)).traceparent == carried


def test_a_child_span_is_made_under_a_recorded_span_and_skipped_under_an_unrecorded_one() -> None:
    from cadenza_events.tracing import child_span
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    asked: list[str] = []

    def attributes() -> dict[str, str]:
        asked.append("yes")
        return {"cadenza.task_id": "t1"}

    recorded = TracerProvider().get_tracer("test")
    with (
        recorded.start_as_current_span("consume") as parent,
        child_span(recorded, "task", attributes) as child,
    ):
        assert child is not parent
        assert child.is_recording()
        assert child.attributes["cadenza.task_id"] == "t1"  # type: ignore[attr-defined]
        assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    assert asked == ["yes"]

    unrecorded = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with unrecorded.start_as_current_span("consume") as parent:
        assert not parent.is_recording()
        assert parent.get_span_context().is_valid
        with child_span(unrecorded, "task", attributes) as child:
            assert child is parent  # what the block publishes carries the consumer's trace
            assert trace.get_current_span() is parent
            child.set_attribute("cadenza.status", "ok")  # a no-op, not an error
    assert asked == ["yes"]  # attributes are not even built

    with child_span(unrecorded, "task", attributes) as root:  # no current span: one is made
        assert root.get_span_context().is_valid
    assert asked == ["yes", "yes"]


_CARRIED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # a version we don't know
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "00-0af7651916cd43dd8448eb211c80319x-b7ad6b7169203331-01",  # not hex
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-011",  # misplaced dash
    ],
)
def test_an_invalid_carried_context_is_none(traceparent: str | None) -> None:
    from cadenza_events.tracing import carried_context

    assert carried_context(_env().with_trace(traceparent, None)) is None


def test_the_carried_context_is_parsed_as_the_propagator_would_but_not_sampled() -> None:
    from cadenza_events.tracing import carried_context, context_of
    from opentelemetry import trace

    env = _env().with_trace(_CARRIED, "vendor=abc")
    parsed = carried_context(env)
    expected = trace.get_current_span(context_of(env)).get_span_context()
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id) == (expected.trace_id, expected.span_id)
    assert parsed.is_remote
    assert parsed.is_valid
    assert not parsed.trace_flags.sampled
    assert parsed.trace_state.get("vendor") == "abc"


def test_a_process_that_records_nothing_continues_the_producers_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No span is made where none is recorded: the producer's context is made current,
    and what is published inside carries its trace."""
    from cadenza_events.envelope import Message
    from cadenza_events.tracing import consume_span, continued, unrecorded
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    env = _env().with_trace(_CARRIED, None)
    msg = Message(topic="t", partition=0, offset=1, key=None, value=b"")

    recording = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: recording)
    assert not unrecorded()
    assert continued(env) is None  # a recording process makes its spans

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider(sampler=ALWAYS_OFF))
    assert unrecorded()
    assert continued(_env()) is None  # nothing carried: a span (a new trace) is made
    with consume_span(env, msg, "g") as span:
        assert trace.get_current_span() is span
        assert not span.is_recording()
        assert _span_ids(inject(_env()).traceparent) == _span_ids(_CARRIED)
        assert inject(_env()).traceparent.endswith("-00")  # passed on as not sampled
    assert not trace.get_current_span().get_span_context().is_valid  # detached after

    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    assert unrecorded()  # the API alone records nothing either


@pytest.mark.parametrize("state", [None, "vendor=abc,other=1"])
@pytest.mark.parametrize("sampled", [True, False])
def test_the_carried_headers_are_what_the_w3c_propagator_writes(
    state: str | None, sampled: bool
) -> None:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    context = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0x00AD6B7169203331,  # leading zeros are kept
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        trace_state=TraceState.from_header([state]) if state else None,
    )
    with trace.use_span(NonRecordingSpan(context)):
        stamped = inject(_env())
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert stamped.traceparent == carrier["traceparent"]
    assert stamped.tracestate == carrier.get("tracestate")


def test_with_trace_keeps_every_other_field() -> None:
    import dataclasses

    env = Envelope(
        payload=RunEvent(run_id="r", kind="run.started"), source="/t", tenant_id="a",
        plan_id="p", task_id="t", attempt=2, subject="s",
    )  # fmt: skip
    stamped = env.with_trace(_CARRIED, "vendor=abc")
    assert (stamped.traceparent, stamped.tracestate) == (_CARRIED, "vendor=abc")
    assert dataclasses.replace(stamped, traceparent=None, tracestate=None) == env
