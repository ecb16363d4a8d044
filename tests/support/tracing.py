"""Spans a test can read: a private SDK tracer provider, patched in as modules' ``tracer``."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def capture_spans(monkeypatch: pytest.MonkeyPatch, *tracers: str) -> InMemorySpanExporter:
    """Patch one SDK tracer in for each named module attribute (``"package.module.tracer"``)
    and return the exporter that holds the spans it finishes. No global tracing state
    changes; ``monkeypatch`` puts the modules' tracers back after the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for target in tracers:
        monkeypatch.setattr(target, tracer)
    return exporter
