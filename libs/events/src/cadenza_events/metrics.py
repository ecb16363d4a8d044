"""Prometheus metrics of the bus (exported on every service's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "cadenza_bus_messages_total",
    "Messages consumed, by outcome (handled, dead_lettered, abandoned).",
    ["topic", "group", "outcome"],
)
RETRIES = Counter(
    "cadenza_bus_handler_retries_total", "Handler retries after an exception.", ["topic", "group"]
)
DLQ = Counter(
    "cadenza_bus_dead_letters_total", "Messages sent to the dead-letter topic.", ["topic", "reason"]
)
HANDLE_SECONDS = Histogram(
    "cadenza_bus_handle_seconds",
    "Time to handle one message, retries included.",
    ["topic", "group"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INFLIGHT = Gauge("cadenza_bus_inflight", "Messages being handled right now.", ["group"])
LAG = Gauge(
    "cadenza_bus_consumer_lag_messages",
    "Messages behind the partition end (end offset minus committed position), per assigned "
    "partition.",
    ["topic", "partition", "group"],
)
PUBLISHED = Counter(
    "cadenza_bus_published_total",
    "Messages published, by topic (on Kafka: counted once the broker acknowledged them).",
    ["topic"],
)
OUTAGE_RETRIES = Counter(
    "cadenza_bus_outage_retries_total",
    "Handler tries that failed because a backing store was down (the message waits; it is "
    "never dead-lettered for that).",
    ["topic", "group"],
)
PAUSED = Gauge(
    "cadenza_bus_paused_messages",
    "Messages waiting for a backing store to come back.",
    ["group"],
)
BATCH_SIZE = Histogram(
    "cadenza_bus_batch_size_messages",
    "Messages handed to a batch handler at once (one partition's records: a fetch, and "
    "the fetches that joined it while it waited).",
    ["group"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BATCHES_JOINED = Counter(
    "cadenza_bus_batch_joins_total",
    "Fetches whose records joined their partition's batch that was waiting to start "
    "(instead of making a batch of their own).",
    ["group"],
)
FETCHES = Counter(
    "cadenza_bus_fetch_requests_total",
    "Fetch requests a dispatch-path consumer sent, by how long the broker may hold them: "
    "idle (nothing fetched waits to be handled: held up to BusSettings.idle_fetch_wait_ms) "
    "or busy (held up to fetch_max_wait_ms).",
    ["group", "mode"],
)
