"""Embeddings (all-MiniLM-L6-v2 as int8 ONNX) and vector search on Qdrant, shared by
rag-ingest, the gateway and the agents' ``rag_search`` tool."""

from .catalog import GenerationLookup, visible_generations
from .embedder import DIMENSIONS, MODEL_ID, Embedder, EmbeddingModelMissing, get_embedder
from .formats import EXTENSIONS, SUPPORTED_TYPES, resolve_content_type
from .models import Chunk, Citation, DocumentInfo, SearchHit
from .retriever import MAX_K, MAX_QUERY_CHARS, Retriever
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
    "FilterValue",
    "GenerationLookup",
    "RetrievalSettings",
    "Retriever",
    "SearchHit",
    "SearchMode",
    "StoreInUse",
    "VectorStore",
    "get_embedder",
    "open_store",
    "release_store",
    "resolve_content_type",
    "visible_generations",
]
