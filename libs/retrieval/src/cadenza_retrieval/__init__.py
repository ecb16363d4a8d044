"""Embeddings (all-MiniLM-L6-v2 as int8 ONNX) and vector search on Qdrant, shared by
rag-ingest, the gateway and the agents' ``rag_search`` tool."""

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
from .store import FilterValue, StoreInUse, VectorStore, open_store, release_store

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
