"""Tracing and metrics set-up shared by every service process."""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import start_http_server

log = logging.getLogger("cadenza.telemetry")
_configured = False


def setup_tracing(service_name: str) -> None:
    """Install an SDK tracer provider; export over OTLP/HTTP when an endpoint is configured
    (standard ``OTEL_EXPORTER_OTLP_ENDPOINT``). Without one, spans still propagate context."""
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def serve_metrics(port: int) -> None:
    """Expose Prometheus /metrics on ``port`` (0 disables; services without HTTP use this)."""
    if port:
        start_http_server(port, addr="127.0.0.1")
        log.info("metrics on http://127.0.0.1:%d/metrics", port)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
