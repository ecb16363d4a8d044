"""Prometheus metrics of embedding and search (labels are bounded: kind, mode, outcome)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EMBED_SECONDS = Histogram(
    "cadenza_retrieval_embed_seconds",
    "Time to embed one call's texts, by kind (bulk ingest or query).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EMBED_TEXTS = Counter(
    "cadenza_retrieval_embedded_texts_total", "Texts embedded, by kind.", ["kind"]
)
SEARCH_SECONDS = Histogram(
    "cadenza_retrieval_search_seconds",
    "Search latency (embedding the query included), by ranking mode.",
    ["mode"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INDEX_WRITES = Counter(
    "cadenza_retrieval_points_written_total", "Chunk points written to the vector store."
)
