"""Metrics of the trigger path, shared by both ingresses (the trigger service's consumer
and the gateway's POST /v1/events), so a dashboard sums them per trigger."""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter(
    "cadenza_trigger_events_total",
    "Upstream events by tenant, trigger and outcome: consumed (trigger '*': every decoded "
    "event), matched, started, deduplicated, dead_lettered (Kafka) or rejected (HTTP); "
    "trigger '*' dead_lettered: undecodable records.",
    ["tenant", "trigger", "outcome"],
)
