"""Prometheus metrics of the trigger service (consumer lag: cadenza_bus_consumer_lag_messages
with group ``<prefix>trigger``)."""

from __future__ import annotations

from cadenza_triggers.metrics import EVENTS
from prometheus_client import Counter, Gauge

__all__ = [
    "BACKPRESSURE",
    "EVENTS",
    "LEDGER_LAST_SUCCESS",
    "LEDGER_PASSES",
    "LEDGER_ROWS",
    "RELOADS",
    "TICKS",
    "TRIGGERS",
]

TICKS = Counter(
    "cadenza_schedule_ticks_total",
    "Schedule ticks by outcome: fired (on time), caught_up (missed, fired by the catch-up "
    "policy), skipped_missed, skipped_overlap, skipped_failed.",
    ["outcome"],
)
BACKPRESSURE = Gauge(
    "cadenza_trigger_backpressure_waiting",
    "Events waiting because their tenant is at its limit of unfinished runs.",
    ["tenant"],
)
TRIGGERS = Gauge("cadenza_trigger_triggers", "Enabled triggers consumed by this process.")
LEDGER_ROWS = Counter(
    "cadenza_trigger_ledger_rows_deleted_total",
    "Dedupe ledger rows deleted by retention, by ledger (triggered_events, schedule_fires).",
    ["ledger"],
)
LEDGER_PASSES = Counter(
    "cadenza_trigger_ledger_retention_passes_total",
    "Ledger retention passes, by outcome (ok, error).",
    ["outcome"],
)
for _ledger in ("triggered_events", "schedule_fires"):
    LEDGER_ROWS.labels(_ledger)
for _outcome in ("ok", "error"):
    LEDGER_PASSES.labels(_outcome)
LEDGER_LAST_SUCCESS = Gauge(
    "cadenza_trigger_ledger_retention_last_success_timestamp_seconds",
    "Unix time of the last ledger retention pass that finished without an error (0: none).",
)
RELOADS = Counter(
    "cadenza_trigger_reloads_total",
    "Re-reads of the trigger definitions, by outcome (ok, error). While they fail (the "
    "database away), the process keeps consuming with the definitions it read last.",
    ["outcome"],
)
for _outcome in ("ok", "error"):
    RELOADS.labels(_outcome)
