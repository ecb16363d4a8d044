"""Embed-and-store in one object: what rag-ingest, the gateway and ``rag_search`` use."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from opentelemetry import trace

from .catalog import GenerationLookup
from .embedder import Embedder, get_embedder
from .generations import newest_generations, visible_hits
from .metrics import SEARCH_SECONDS
from .models import MAX_K, MAX_QUERY_CHARS, Chunk, DocumentInfo, FilterValue, SearchHit
from .settings import RetrievalSettings, SearchMode

if TYPE_CHECKING:
    from .store import VectorStore

tracer = trace.get_tracer("cadenza.retrieval")


class Retriever:
    """``await index_document(...)``, ``await search(...)``; ``close()`` when done."""

    def __init__(
        self,
        settings: RetrievalSettings | None = None,
        *,
        embedder: Embedder | None = None,
        store: VectorStore | None = None,
    ) -> None:
        self.settings = settings or RetrievalSettings()
        self._embedder = embedder
        self._owns_store = store is None
        if store is None:
            # Here, not at import: a process that searches through rag-ingest (the gateway,
            # the workers) never loads the Qdrant client (~0.65 s of CPU at its start).
            from .store import open_store

            store = open_store(self.settings)
        self.store = store

    @property
    def embedder(self) -> Embedder:
        """Loaded on first use: a gateway that never searches never loads the model."""
        if self._embedder is None:
            self._embedder = get_embedder(self.settings)
        return self._embedder

    async def write_document(
        self, tenant_id: str, info: DocumentInfo, chunks: Sequence[Chunk], generation: int
    ) -> None:
        """Embed ``chunks`` and write them as the document's ``generation`` (searches show
        it once the catalog commits it; then :meth:`drop_other_generations`)."""
        vectors = await self.embedder.aencode([_embedded_text(c) for c in chunks])
        await self.store.write_generation(tenant_id, info, chunks, vectors, generation)

    async def drop_other_generations(
        self, tenant_id: str, collection: str, document_id: str, generation: int
    ) -> None:
        await self.store.delete_other_generations(tenant_id, collection, document_id, generation)

    async def delete_document(self, tenant_id: str, collection: str, document_id: str) -> None:
        await self.store.delete_document(tenant_id, collection, document_id)

    async def search(
        self,
        tenant_id: str,
        collection: str,
        query: str,
        *,
        k: int = 5,
        mode: SearchMode | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        generations: GenerationLookup | None = None,
    ) -> list[SearchHit]:
        """The ``k`` most relevant chunks of the tenant's ``collection`` for ``query``.

        ``generations`` (see :func:`catalog.visible_generations`) says which generation of
        each document readers may see; without it the newest one seen wins."""
        check_search(query, k)
        mode = mode or self.settings.default_mode
        with tracer.start_as_current_span(
            "retrieval.search",
            attributes={"cadenza.collection": collection, "cadenza.k": k, "cadenza.mode": mode},
        ):
            start = time.perf_counter()
            (vector,) = await self.embedder.aencode([query], query=True)
            candidates = await self.store.search(
                tenant_id, collection, vector, query, k=k, mode=mode, filters=filters
            )
            if generations is None:
                visible = newest_generations(candidates)
            else:
                visible = await generations({c.hit.citation.document_id for c in candidates})
            hits = visible_hits(candidates, visible)[:k]
            SEARCH_SECONDS.labels(mode).observe(time.perf_counter() - start)
            return hits

    def close(self) -> None:
        if self._owns_store:
            from .store import release_store

            release_store(self.store)

    async def aclose(self) -> None:
        """:meth:`close`, under the :class:`~cadenza_retrieval.searching.Searcher` name."""
        self.close()


def check_search(query: str, k: int) -> None:
    """``ValueError`` naming the field for a query no search should run."""
    if not query.strip():
        raise ValueError("query: must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query: longer than {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k: must be between 1 and {MAX_K}")


def _embedded_text(chunk: Chunk) -> str:
    """The heading travels with its passage: it often names what the passage is about."""
    return f"{chunk.heading}\n{chunk.text}" if chunk.heading else chunk.text
