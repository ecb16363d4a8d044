"""Consumes `doc.ingest`: reads the document from the object store and writes its chunks
next to it. Embedding the chunks into Qdrant is the RAG issue's next stage."""

from __future__ import annotations

import json
import logging
from typing import Any

from cadenza_events import Consumer, DocIngest, Envelope, NonRetryableError, Topic
from cadenza_runtime import Resources
from cadenza_state import ObjectNotFound
from opentelemetry import trace
from prometheus_client import Counter

from .chunking import chunk_text
from .settings import RagSettings

log = logging.getLogger("cadenza.rag")
tracer = trace.get_tracer("cadenza.rag")
DOCS = Counter("cadenza_rag_documents_total", "Documents ingested, by outcome.", ["outcome"])
CHUNKS = Counter("cadenza_rag_chunks_total", "Chunks produced.")


def chunks_key(document_id: str) -> str:
    return f"docs/{document_id}/chunks.json"


class RagIngest:
    def __init__(self, resources: Resources, settings: RagSettings) -> None:
        self._resources = resources
        self._settings = settings
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        from cadenza_events import ConsumerOptions

        self._consumer = self._resources.bus.consumer(
            [Topic.DOC_INGEST],
            "cadenza-rag-ingest",
            self.handle,
            ConsumerOptions(concurrency=self._settings.concurrency),
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def handle(self, env: Envelope[Any]) -> None:
        doc = env.payload
        if not isinstance(doc, DocIngest):
            return
        with tracer.start_as_current_span(
            "rag.ingest", attributes={"cadenza.document_id": doc.document_id}
        ):
            try:
                raw = await self._resources.objects.get(doc.object_ref)
            except ObjectNotFound as exc:
                DOCS.labels("missing").inc()
                raise NonRetryableError(
                    f"document {doc.document_id}: {exc}", code="not_found"
                ) from exc
            text = raw.decode("utf-8", "replace")
            chunks = chunk_text(text, self._settings.chunk_chars, self._settings.overlap_chars)
            body = {
                "document_id": doc.document_id,
                "tenant_id": env.tenant_id,
                "collection": doc.collection,
                "metadata": doc.metadata,
                "chunks": [{"index": i, "text": c} for i, c in enumerate(chunks)],
            }
            # Idempotent: a redelivery rewrites the same object.
            await self._resources.objects.put(
                chunks_key(doc.document_id),
                json.dumps(body).encode(),
                content_type="application/json",
            )
            DOCS.labels("ingested").inc()
            CHUNKS.inc(len(chunks))
            log.info("document %s: %d chunks", doc.document_id, len(chunks))
