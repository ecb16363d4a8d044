"""Prometheus metrics of the trigger service (consumer lag: cadenza_bus_consumer_lag_messages
with group ``<prefix>trigger``)."""

from __future__ import annotations

from cadenza_triggers.metrics import EVENTS
from prometheus_client import Counter, Gauge

__all__ = ["BACKPRESSURE", "EVENTS", "TICKS", "TRIGGERS"]

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
