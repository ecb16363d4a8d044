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
