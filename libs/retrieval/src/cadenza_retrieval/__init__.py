"""Embeddings (all-MiniLM-L6-v2 as int8 ONNX) and vector search on Qdrant, shared by
rag-ingest, the gateway and the agents' ``rag_search`` tool."""

from typing import TYPE_CHECKING, Any

from .catalog import GenerationLookup, visible_generations
from .embedder import DIMENSIONS, MODEL_ID, Embedder, EmbeddingModelMissing, get_embedder
from .formats import EXTENSIONS, SUPPORTED_TYPES, resolve_content_type
from .models import (
    MAX_K,
    MAX_QUERY_CHARS,
    Chunk,
    Citation,
    DocumentInfo,
    FilterScalar,
    FilterValue,
    SearchHit,
    SearchQuery,
    SearchResults,
)
from .retriever import Retriever, check_search
from .searching import (
    RemoteSearcher,
    Searcher,
    SearchUnavailable,
    UnknownCollection,
    open_searcher,
)
from .settings import RetrievalSettings, SearchMode

if TYPE_CHECKING:
    from .store import StoreInUse, VectorStore, open_store, release_store

_STORE_NAMES = frozenset({"StoreInUse", "VectorStore", "open_store", "release_store"})


def __getattr__(name: str) -> Any:
    """The Qdrant-backed names, imported on first use: a process that only searches through
    rag-ingest never loads the Qdrant client."""
    if name in _STORE_NAMES:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DIMENSIONS",
    "EXTENSIONS",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "MODEL_ID",
    "SUPPORTED_TYPES",
    "Chunk",
    "Citation",
    "DocumentInfo",
    "Embedder",
    "EmbeddingModelMissing",
    "FilterScalar",
    "FilterValue",
    "GenerationLookup",
    "RemoteSearcher",
    "RetrievalSettings",
    "Retriever",
    "SearchHit",
    "SearchMode",
    "SearchQuery",
    "SearchResults",
    "SearchUnavailable",
    "Searcher",
    "StoreInUse",
    "UnknownCollection",
    "VectorStore",
    "check_search",
    "get_embedder",
    "open_searcher",
    "open_store",
    "release_store",
    "resolve_content_type",
    "visible_generations",
]
