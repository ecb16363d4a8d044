"""cadenza_runtime: what every Cadenza service process shares."""

from cadenza_events.labelled import labelled

from . import keys
from .http_server import HttpServer
from .internal_auth import InsecureEndpoint, bearer_matches, is_loopback, require_token_off_loopback
from .outages import causes, is_outage
from .process import (
    event_loop_choice,
    run_service,
    run_until_signal,
    tune_gc,
    wait_for_shutdown_signal,
)
from .relay import OutboxRelay
from .resources import Resources, open_resources
from .run_events import RunEventEntry, RunEventLog, RunEventRecorder
from .runs import CreatedRun, create_run, plan_requested
from .staging import stage_event, stage_events, stage_outbox
from .telemetry import MetricsSettings, serve_metrics, setup_logging, setup_tracing

__all__ = [
    "CreatedRun",
    "HttpServer",
    "InsecureEndpoint",
    "MetricsSettings",
    "OutboxRelay",
    "Resources",
    "RunEventEntry",
    "RunEventLog",
    "RunEventRecorder",
    "bearer_matches",
    "causes",
    "create_run",
    "event_loop_choice",
    "is_loopback",
    "is_outage",
    "keys",
    "labelled",
    "open_resources",
    "plan_requested",
    "require_token_off_loopback",
    "run_service",
    "run_until_signal",
    "serve_metrics",
    "setup_logging",
    "setup_tracing",
    "stage_event",
    "stage_events",
    "stage_outbox",
    "tune_gc",
    "wait_for_shutdown_signal",
]
