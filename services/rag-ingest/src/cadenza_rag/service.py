"""Consumes `doc.ingest`: fetch the object, parse, chunk, embed, write to the vector store,
and keep the document's status (queued → processing → indexed | failed) in the database.

A document's events share a key (its id), so its ingests and its deletion are handled in
order. Problems with the document itself end as status `failed` with the reason, and the
consumer moves on; infrastructure errors raise, so the bus retries (then dead-letters).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from cadenza_events import (
    BACKGROUND_FETCH_WAIT_MS,
    Consumer,
    ConsumerOptions,
    DocIngest,
    Envelope,
    Topic,
)
from cadenza_retrieval import DocumentInfo, Retriever, resolve_content_type
from cadenza_runtime import Resources, is_outage
from cadenza_state import DocumentRecord, DocumentStatus, ObjectNotFound
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from . import records
from .chunking import chunk_sections
from .parsing import DocumentError, parse_document
from .settings import RagSettings

log = logging.getLogger("cadenza.rag")
tracer = trace.get_tracer("cadenza.rag")
DOCS = Counter("cadenza_rag_documents_total", "Documents handled, by outcome.", ["outcome"])
CHUNKS = Counter("cadenza_rag_chunks_total", "Chunks embedded and written.")
INGEST_SECONDS = Histogram(
    "cadenza_rag_ingest_seconds",
    "Time to ingest one document (fetch to indexed).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


class RagIngest:
    """``RagIngest(resources, settings, retriever)``; ``start()`` / ``stop()``."""

    def __init__(
        self,
        resources: Resources,
        settings: RagSettings | None = None,
        retriever: Retriever | None = None,
    ) -> None:
        self._resources = resources
        self._settings = settings or RagSettings()
        self._owns_retriever = retriever is None
        self.retriever = retriever or Retriever()
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        self._consumer = self._resources.bus.consumer(
            [Topic.DOC_INGEST],
            "cadenza-rag-ingest",
            self.handle,
            ConsumerOptions(
                concurrency=self._settings.concurrency,
                is_outage=is_outage,
                # A document may wait half a second to be read: idle, two fetches a second.
                fetch_wait_ms=BACKGROUND_FETCH_WAIT_MS,
            ),
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._owns_retriever:
            self.retriever.close()

    async def handle(self, env: Envelope[Any]) -> None:
        doc = env.payload
        if not isinstance(doc, DocIngest):
            return
        with tracer.start_as_current_span(
            f"rag.{doc.action}",
            attributes={"cadenza.document_id": doc.document_id, "cadenza.tenant_id": env.tenant_id},
        ):
            if doc.action == "delete":
                await self._delete(env.tenant_id, doc)
            else:
                await self._ingest(env.tenant_id, doc)

    async def _delete(self, tenant_id: str, doc: DocIngest) -> None:
        await self.retriever.delete_document(tenant_id, doc.collection, doc.document_id)
        await records.forget(self._resources.sessions, tenant_id, doc.document_id)
        DOCS.labels("deleted").inc()
        log.info("document %s: deleted from %s", doc.document_id, doc.collection)

    async def _ingest(self, tenant_id: str, doc: DocIngest) -> None:
        sessions = self._resources.sessions
        record = await records.load_or_register(sessions, tenant_id, doc)
        if record.tenant_id != tenant_id:
            log.warning("document %s: event tenant %s does not own it", doc.document_id, tenant_id)
            DOCS.labels("refused").inc()
            return
        start = time.perf_counter()
        try:
            outcome = await self._index(tenant_id, record, doc)
        except DocumentError as exc:
            await records.mark_failed(sessions, record.id, str(exc))
            DOCS.labels("failed").inc()
            log.info("document %s failed: %s", record.id, exc)
            return
        except Exception as exc:
            # The bus retries; if it gives up the document must not stay `processing`.
            await records.mark_failed(sessions, record.id, f"internal error: {exc}")
            raise
        DOCS.labels(outcome).inc()
        INGEST_SECONDS.observe(time.perf_counter() - start)

    async def _index(self, tenant_id: str, record: DocumentRecord, doc: DocIngest) -> str:
        sessions = self._resources.sessions
        if not await records.collection_exists(sessions, tenant_id, record.collection):
            raise DocumentError(
                f"unknown collection {record.collection!r}", code="unknown_collection"
            )
        await records.update(sessions, record.id, status=DocumentStatus.PROCESSING.value)
        try:
            raw = await self._resources.objects.get(doc.object_ref)
        except ObjectNotFound:
            raise DocumentError(
                f"object {doc.object_ref!r} not found in the object store", code="not_found"
            ) from None
        limit = self._settings.max_document_bytes
        if len(raw) > limit:
            raise DocumentError(
                f"the document has {len(raw)} bytes; the limit is {limit}", code="too_large"
            )
        content_hash = hashlib.sha256(raw).hexdigest()
        if record.indexed_hash == content_hash and record.generation is not None:
            await records.mark_indexed(
                sessions,
                record.id,
                content_hash=content_hash,
                chunks=record.chunk_count,
                generation=record.generation,
            )
            log.info("document %s: content unchanged, nothing to embed", record.id)
            return "unchanged"
        content_type = resolve_content_type(doc.content_type or record.content_type, record.title)
        if content_type is None:
            raise DocumentError(
                f"unsupported content type {doc.content_type!r}", code="unsupported_type"
            )
        sections = parse_document(raw, content_type)
        chunks = chunk_sections(sections, self._settings.chunk_chars, self._settings.overlap_chars)
        if not chunks:
            raise DocumentError("no text found in the document", code="no_text")
        if len(chunks) > self._settings.max_chunks:
            raise DocumentError(
                f"the document makes {len(chunks)} chunks; the limit is "
                f"{self._settings.max_chunks}",
                code="too_many_chunks",
            )
        info = DocumentInfo(
            document_id=record.id,
            title=record.title,
            collection=record.collection,
            metadata=record.meta or {},
        )
        generation = time.time_ns()
        await self.retriever.write_document(tenant_id, info, chunks, generation)
        await records.mark_indexed(
            sessions,
            record.id,
            content_hash=content_hash,
            chunks=len(chunks),
            generation=generation,
        )
        await self.retriever.drop_other_generations(
            tenant_id, record.collection, record.id, generation
        )
        CHUNKS.inc(len(chunks))
        log.info("document %s: %d chunks indexed", record.id, len(chunks))
        return "indexed"
