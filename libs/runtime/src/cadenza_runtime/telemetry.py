"""Tracing, metrics and logging set-up shared by every service process.

The span exporter follows the standard OpenTelemetry environment variables, so operators
configure Cadenza like any other instrumented service:

- ``OTEL_TRACES_EXPORTER``: ``otlp`` (default when an OTLP endpoint is set), ``console``
  (spans as JSON on stderr, for dev) or ``none`` (default otherwise: spans are not recorded,
  but their ids still carry the trace context across Kafka).
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: the collector.
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``:
  ``http/protobuf`` (default) or ``grpc`` (needs ``opentelemetry-exporter-otlp-proto-grpc``).
- ``OTEL_SERVICE_NAME`` overrides the service name; ``OTEL_RESOURCE_ATTRIBUTES`` adds
  attributes; ``OTEL_BSP_*`` tune batching.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .internal_auth import bearer_matches, require_token_off_loopback

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

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
    say. Without an exporter, nothing would ever read a span: spans are not recorded
    (sampler ``always_off``, unless ``OTEL_TRACES_SAMPLER`` names one), yet each still has
    its trace and span ids, so the W3C context crosses every Kafka hop and logs carry it.
    Recording spans nobody exported cost ~20 % of a worker's CPU per task. Set the exporter
    on every service (the Helm chart does): a process without one passes the context on
    marked not sampled."""
    global _configured
    if _configured:
        return
    _configured = True
    name = _env("OTEL_SERVICE_NAME") or service_name
    which = exporter_name()
    exporter = build_exporter(which)
    unrecorded = exporter is None and not _env("OTEL_TRACES_SAMPLER")
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES; sampler None: OTEL_TRACES_SAMPLER
    # or the SDK's default (parent-based, always on).
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: name}),
        sampler=ALWAYS_OFF if unrecorded else None,
    )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: service %s, exporter %s", name, which)


class MetricsSettings(BaseSettings):
    """Where a service's own /metrics port listens and who may read it (env prefix
    ``CADENZA_METRICS_``; the gateway serves /metrics on its API port instead)."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_METRICS_", extra="ignore")

    host: str = Field(
        default="127.0.0.1",
        description="Address of the metrics port of the orchestrator, workers and rag-ingest. "
        "Anything but loopback needs CADENZA_METRICS_TOKEN.",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Bearer token the operators' scraper sends (`authorization` in the "
        "Prometheus scrape config): the metrics carry tenant ids in labels. Empty = open, "
        "allowed on loopback only.",
    )


def serve_metrics(
    port: int, host: str | None = None, *, settings: MetricsSettings | None = None
) -> WSGIServer | None:
    """Expose Prometheus /metrics on ``port`` (0 disables; services without HTTP use this),
    behind the operators' bearer token when ``CADENZA_METRICS_TOKEN`` is set; ``/healthz``
    (for liveness probes) answers without it. Refuses a
    non-loopback address without a token (:class:`InsecureEndpoint`)."""
    if not port:
        return None
    settings = settings or MetricsSettings()
    bind = host or settings.host
    token = settings.token.get_secret_value()
    require_token_off_loopback(
        bind, token, what="the metrics port", variable="CADENZA_METRICS_TOKEN"
    )
    server = make_server(
        bind,
        port,
        _bearer_guard(make_wsgi_app(), token),
        ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    log.info(
        "metrics on http://%s:%d/metrics (%s)",
        bind,
        server.server_port,
        "bearer token" if token else "open: loopback only",
    )
    return server


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds: not worth a log line each."""


def _bearer_guard(app: WSGIApplication, token: str) -> WSGIApplication:
    def guarded(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":  # liveness probes: no token, no tenant
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if bearer_matches(environ.get("HTTP_AUTHORIZATION"), token):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Bearer realm="metrics"'),
            ],
        )
        return [b"/metrics needs the operators' bearer token (CADENZA_METRICS_TOKEN)\n"]

    return guarded


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
