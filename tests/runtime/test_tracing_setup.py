"""``setup_tracing``: without an exporter no span is recorded, yet every span has ids that
carry the trace across hops; with one, spans are recorded. Each case runs in a fresh
interpreter (the tracer provider is process-global and set once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import json
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from cadenza_runtime.telemetry import setup_tracing

setup_tracing("probe")
tracer = trace.get_tracer("probe")
upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
parent = TraceContextTextMapPropagator().extract({"traceparent": upstream})
with tracer.start_as_current_span("root") as root, tracer.start_as_current_span("child") as child:
    recording = [root.is_recording(), child.is_recording()]  # an ended span records nothing
with tracer.start_as_current_span("continued", context=parent) as continued:
    recording.append(continued.is_recording())
    carrier = {}
    TraceContextTextMapPropagator().inject(carrier)
print("PROBE " + json.dumps({
    "recording": recording,
    "valid": [s.get_span_context().is_valid for s in (root, child, continued)],
    "same_trace": root.get_span_context().trace_id == child.get_span_context().trace_id,
    "continued_trace": format(continued.get_span_context().trace_id, "032x"),
    "traceparent": carrier.get("traceparent", ""),
}))
"""


def probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # The console exporter writes spans to stdout too: find the probe's own line.
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


def test_without_an_exporter_spans_are_not_recorded_but_carry_the_trace() -> None:
    seen = probe(OTEL_TRACES_EXPORTER="none")
    assert seen["recording"] == [False, False, False]
    assert seen["valid"] == [True, True, True]
    assert seen["same_trace"] is True  # a child joins its parent's trace
    assert seen["continued_trace"] == "4bf92f3577b34da6a3ce929d0e0e4736"  # an upstream's too
    assert str(seen["traceparent"]).startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


def test_with_an_exporter_or_a_chosen_sampler_spans_are_recorded() -> None:
    assert probe(OTEL_TRACES_EXPORTER="console")["recording"] == [True, True, True]
    chosen = probe(OTEL_TRACES_EXPORTER="none", OTEL_TRACES_SAMPLER="always_on")
    assert chosen["recording"] == [True, True, True]
