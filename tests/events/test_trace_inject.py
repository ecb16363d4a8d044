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
