"""The vector store: one Qdrant collection per (tenant, collection), through qdrant-client.

A Qdrant server when ``qdrant_url`` is set, else the client's embedded local mode. Local
mode admits ONE client per storage folder (it takes a file lock), so a process shares one
:class:`VectorStore` per location (:func:`open_store`), and every call into a local client
holds a lock: the local engine is plain Python and not safe to mutate while read.

Each point is a chunk: a ``dense`` vector (unit length, so dot product = cosine — the local
engine then skips re-normalising every stored vector on each query), a ``bm25`` sparse
vector (IDF applied by Qdrant) and a payload with the text and the citation fields.

Replacing a document is atomic for readers: the new version's points are written with a
new ``generation``; readers keep only hits of the generation the catalog (the
``documents`` row) declares visible, and ingest flips that generation in one row update
once every new point is written, then deletes the old points. A reader sees the whole
old version or the whole new one, never a mix; a deleted document (no row) is hidden at
once, before its points are gone. Without a catalog the newest generation seen wins.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from opentelemetry import trace
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from .embedder import DIMENSIONS, Vectors
from .generations import Candidate
from .metrics import INDEX_WRITES
from .models import Chunk, Citation, DocumentInfo, FilterValue, SearchHit
from .settings import RetrievalSettings, SearchMode
from .sparse import document_vector, query_vector

log = logging.getLogger("cadenza.retrieval")
tracer = trace.get_tracer("cadenza.retrieval")
T = TypeVar("T")

DENSE = "dense"
SPARSE = "bm25"
_POINT_NAMESPACE = uuid.UUID("6f1c2f0e-5b0a-4a57-9c1e-0c2a6a7e1d42")
# Payload fields searches filter on; a server indexes them (local mode ignores indexes).
_INDEXED_FIELDS = {
    "document_id": qm.PayloadSchemaType.KEYWORD,
    "generation": qm.PayloadSchemaType.INTEGER,
    "page": qm.PayloadSchemaType.INTEGER,
}


class StoreInUse(RuntimeError):
    """The local Qdrant folder is locked by another process."""


@dataclass
class VectorStore:
    """Async facade over one Qdrant client (blocking calls run in threads)."""

    client: QdrantClient
    settings: RetrievalSettings
    local: bool
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _known: set[str] = field(default_factory=set)
    _users: int = 0

    # -- naming -------------------------------------------------------------------------

    def collection_name(self, tenant_id: str, collection: str) -> str:
        """``{prefix}_{tenant}_{collection}_{hash}``: readable, and unambiguous thanks to a
        short hash of the exact pair (tenant ids may themselves contain ``_``)."""
        digest = hashlib.sha256(f"{tenant_id}\0{collection}".encode()).hexdigest()[:10]
        return f"{self.settings.collection_prefix}_{tenant_id}_{collection}_{digest}"

    async def _call(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            if not self.local:
                return fn()
            with self._lock:
                return fn()

        return await asyncio.to_thread(locked)

    # -- collections --------------------------------------------------------------------

    async def ensure_collection(self, tenant_id: str, collection: str) -> str:
        name = self.collection_name(tenant_id, collection)
        if name in self._known:
            return name

        def create() -> None:
            if self.client.collection_exists(name):
                return
            self.client.create_collection(
                name,
                vectors_config={DENSE: qm.VectorParams(size=DIMENSIONS, distance=qm.Distance.DOT)},
                sparse_vectors_config={SPARSE: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
            if not self.local:
                for key, schema in _INDEXED_FIELDS.items():
                    self.client.create_payload_index(name, key, schema)

        await self._call(create)
        self._known.add(name)
        return name

    async def drop_collection(self, tenant_id: str, collection: str) -> None:
        name = self.collection_name(tenant_id, collection)
        self._known.discard(name)
        await self._call(lambda: self.client.delete_collection(name))

    # -- writes -------------------------------------------------------------------------

    async def write_generation(
        self,
        tenant_id: str,
        info: DocumentInfo,
        chunks: Sequence[Chunk],
        vectors: Vectors,
        generation: int,
    ) -> None:
        """Write ``chunks`` as the document's points of ``generation`` (invisible to
        readers until the catalog commits that generation; see the module docstring)."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        name = await self.ensure_collection(tenant_id, info.collection)
        points = [
            _point(name, info, chunk, vectors[i], generation) for i, chunk in enumerate(chunks)
        ]
        batch = self.settings.upsert_batch_size

        with tracer.start_as_current_span(
            "retrieval.write_generation",
            attributes={"cadenza.document_id": info.document_id, "cadenza.chunks": len(points)},
        ):
            # One lock hold per batch: searches interleave with a large document's writes.
            for start in range(0, len(points), batch):
                part = points[start : start + batch]
                await self._call(partial(self.client.upsert, name, part, wait=True))
        INDEX_WRITES.inc(len(points))

    async def delete_other_generations(
        self, tenant_id: str, collection: str, document_id: str, generation: int
    ) -> None:
        """Remove the document's points of every generation but ``generation``."""
        name = self.collection_name(tenant_id, collection)
        selector = qm.FilterSelector(
            filter=qm.Filter(
                must=[_match("document_id", document_id)],
                must_not=[_match("generation", generation)],
            )
        )
        await self._call(lambda: self.client.delete(name, selector, wait=True))

    async def delete_document(self, tenant_id: str, collection: str, document_id: str) -> None:
        name = self.collection_name(tenant_id, collection)

        def delete() -> None:
            if not self.client.collection_exists(name):
                return
            selector = qm.FilterSelector(
                filter=qm.Filter(must=[_match("document_id", document_id)])
            )
            self.client.delete(name, selector, wait=True)

        await self._call(delete)

    async def count(self, tenant_id: str, collection: str, document_id: str | None = None) -> int:
        name = self.collection_name(tenant_id, collection)

        def count() -> int:
            if not self.client.collection_exists(name):
                return 0
            flt = qm.Filter(must=[_match("document_id", document_id)]) if document_id else None
            return self.client.count(name, count_filter=flt, exact=True).count

        return await self._call(count)

    # -- reads --------------------------------------------------------------------------

    async def search(
        self,
        tenant_id: str,
        collection: str,
        vector: Sequence[float],
        text: str,
        *,
        k: int,
        mode: SearchMode,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> list[Candidate]:
        """Candidates for the ``k`` best chunks, best first: over-fetched, so that hiding
        other generations (a replacement in flight, a deletion) still leaves ``k``."""
        name = self.collection_name(tenant_id, collection)
        flt = _filter(filters)
        limit = k * 2 + 8
        dense = [float(x) for x in vector]

        def query() -> list[qm.ScoredPoint]:
            if not self.client.collection_exists(name):
                return []
            indices, values = query_vector(text)
            if mode == "vector" or not indices:
                response = self.client.query_points(
                    name, query=dense, using=DENSE, limit=limit, query_filter=flt
                )
            else:
                sparse = qm.SparseVector(indices=indices, values=values)
                response = self.client.query_points(
                    name,
                    prefetch=[
                        qm.Prefetch(query=dense, using=DENSE, limit=limit, filter=flt),
                        qm.Prefetch(query=sparse, using=SPARSE, limit=limit, filter=flt),
                    ],
                    query=qm.FusionQuery(fusion=qm.Fusion.RRF),
                    limit=limit,
                )
            return list(response.points)

        return [_candidate(p) for p in await self._call(query)]

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        self.client.close()


def _point(
    name: str, info: DocumentInfo, chunk: Chunk, vector: Any, generation: int
) -> qm.PointStruct:
    indices, values = document_vector(f"{chunk.heading or ''}\n{chunk.text}")
    point_id = uuid.uuid5(
        _POINT_NAMESPACE, f"{name}/{info.document_id}/{generation}/{chunk.position}"
    )
    vectors: dict[str, Any] = {DENSE: [float(x) for x in vector]}
    if indices:
        vectors[SPARSE] = qm.SparseVector(indices=indices, values=values)
    return qm.PointStruct(
        id=str(point_id),
        vector=vectors,
        payload={
            "document_id": info.document_id,
            "title": info.title,
            "collection": info.collection,
            "metadata": info.metadata,
            "generation": generation,
            "position": chunk.position,
            "page": chunk.page,
            "heading": chunk.heading,
            "text": chunk.text,
        },
    )


def _match(key: str, value: Any) -> qm.FieldCondition:
    if isinstance(value, list):
        return qm.FieldCondition(key=key, match=qm.MatchAny(any=value))
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def _filter(filters: Mapping[str, FilterValue] | None) -> qm.Filter | None:
    """Equality filters: ``document_id`` and ``page`` as such, anything else on the
    document's metadata (``{"lang": "en"}`` matches ``metadata.lang``); a list = any of."""
    if not filters:
        return None
    conditions: list[qm.Condition] = []
    for key, value in filters.items():
        path = key if key in _INDEXED_FIELDS else f"metadata.{key}"
        conditions.append(_match(path, value))
    return qm.Filter(must=conditions)


def _candidate(point: qm.ScoredPoint) -> Candidate:
    payload = point.payload or {}
    hit = SearchHit(
        text=str(payload.get("text", "")),
        score=float(point.score),
        citation=Citation(
            document_id=str(payload.get("document_id")),
            title=str(payload.get("title", "")),
            collection=str(payload.get("collection", "")),
            position=int(payload.get("position", 0)),
            page=payload.get("page"),
            heading=payload.get("heading"),
        ),
        metadata=dict(payload.get("metadata") or {}),
    )
    return Candidate(hit, int(payload.get("generation", 0)))


# -- one store per location per process -----------------------------------------------------

_stores: dict[str, VectorStore] = {}
_stores_lock = threading.Lock()


def _location(settings: RetrievalSettings) -> str:
    if settings.qdrant_url:
        return settings.qdrant_url
    path = str(settings.qdrant_path)
    return path if path == ":memory:" else str(settings.qdrant_path.resolve())


def open_store(settings: RetrievalSettings | None = None) -> VectorStore:
    """The process's store for ``settings``' location (opened on first use; every
    :func:`open_store` must be paired with :func:`release_store`)."""
    settings = settings or RetrievalSettings()
    key = _location(settings)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = VectorStore(_client(settings), settings, local=not settings.qdrant_url)
            if key != ":memory:":
                _stores[key] = store
        store._users += 1
        return store


def release_store(store: VectorStore) -> None:
    """Close the store when its last user lets go."""
    with _stores_lock:
        store._users -= 1
        if store._users > 0:
            return
        for key, value in list(_stores.items()):
            if value is store:
                del _stores[key]
    store.close()


def _client(settings: RetrievalSettings) -> QdrantClient:
    if settings.qdrant_url:
        return QdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key or None)
    if str(settings.qdrant_path) == ":memory:":
        return QdrantClient(location=":memory:")
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise StoreInUse(
            f"the local Qdrant folder {settings.qdrant_path} is in use by another process; "
            "local mode serves one process (`cadenza dev`): set CADENZA_RETRIEVAL_QDRANT_URL "
            "to a Qdrant server when services run as separate processes"
        ) from exc
