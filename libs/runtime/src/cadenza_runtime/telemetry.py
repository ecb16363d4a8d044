"""Tracing, metrics and logging set-up shared by every service process.

The span exporter follows the standard OpenTelemetry environment variables, so operators
configure Cadenza like any other instrumented service:

- ``OTEL_TRACES_EXPORTER``: ``otlp`` (default when an OTLP endpoint is set), ``console``
  (spans as JSON on stderr, for dev) or ``none`` (default otherwise: spans still carry the
  trace context across Kafka, nothing is exported).
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: the collector.
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``:
  ``http/protobuf`` (default) or ``grpc`` (needs ``opentelemetry-exporter-otlp-proto-grpc``).
- ``OTEL_SERVICE_NAME`` overrides the service name; ``OTEL_RESOURCE_ATTRIBUTES`` adds
  attributes; ``OTEL_BSP_*`` tune batching.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from prometheus_client import start_http_server

log = logging.getLogger("cadenza.telemetry")
_configured = False

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")


class TelemetryConfigError(ValueError):
    """An OTEL_* variable has a value Cadenza cannot honour (names the variable)."""


def _env(*names: str) -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return ""


def exporter_name() -> str:
    """Which exporter the environment asks for (see the module docstring)."""
    configured = _env("OTEL_TRACES_EXPORTER").lower()
    if not configured:
        endpoint = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        return "otlp" if endpoint else "none"
    # The spec allows a comma-separated list; one exporter is all Cadenza needs.
    first = configured.split(",")[0].strip()
    if first not in EXPORTERS:
        raise TelemetryConfigError(
            f"OTEL_TRACES_EXPORTER={configured!r} is not supported; use one of "
            f"{', '.join(EXPORTERS)}"
        )
    return first


def build_exporter(name: str) -> SpanExporter | None:
    """The span exporter for ``name`` (``none`` → None)."""
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    protocol = (
        _env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or PROTOCOLS[0]
    )
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise TelemetryConfigError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the opentelemetry-exporter-otlp-proto-"
                "grpc package; install it or use http/protobuf"
            ) from exc
        exporter: SpanExporter = GrpcExporter()
        return exporter
    if protocol != "http/protobuf":
        raise TelemetryConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use one of "
            f"{', '.join(PROTOCOLS)}"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def setup_tracing(service_name: str) -> None:
    """Install the SDK tracer provider once per process, exporting as the OTEL_* variables
    say. Without an exporter, spans still exist, so W3C context crosses every Kafka hop."""
    global _configured
    if _configured:
        return
    _configured = True
    name = _env("OTEL_SERVICE_NAME") or service_name
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    which = exporter_name()
    exporter = build_exporter(which)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: service %s, exporter %s", name, which)


def serve_metrics(port: int, host: str | None = None) -> None:
    """Expose Prometheus /metrics on ``port`` (0 disables; services without HTTP use this).

    ``host`` defaults to ``CADENZA_METRICS_HOST`` or 127.0.0.1 (local Prometheus)."""
    if port:
        bind = host or os.environ.get("CADENZA_METRICS_HOST") or "127.0.0.1"
        start_http_server(port, addr=bind)
        log.info("metrics on http://%s:%d/metrics", bind, port)


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
