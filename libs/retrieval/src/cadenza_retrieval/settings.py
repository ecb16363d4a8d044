"""Retrieval configuration (env prefix ``CADENZA_RETRIEVAL_``), shared by rag-ingest, the
gateway and the worker's ``rag_search`` tool: they must agree on where vectors live."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SearchMode = Literal["vector", "hybrid"]


class RetrievalSettings(BaseSettings):
    """Where the vector store is, how the embedding model runs, how searches rank."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_RETRIEVAL_", extra="ignore")

    qdrant_url: str = Field(
        default="",
        description="Qdrant server URL (e.g. http://qdrant:6333). Empty = the client's "
        "embedded local mode on `qdrant_path` (one process only: `cadenza dev`, tests).",
    )
    search_url: str = Field(
        default="",
        description="rag-ingest's search API (e.g. http://127.0.0.1:9113). When set, the "
        "gateway and the rag_search tool search through it instead of opening the vector "
        "store: needed when services run as separate processes on the embedded local mode.",
    )
    search_token: SecretStr = Field(
        default=SecretStr(""),
        description="Service token of rag-ingest's search API: rag-ingest requires it as a "
        "bearer token and the gateway and workers send it (set the same value on all). "
        "Empty = no token, which rag-ingest accepts only on a loopback CADENZA_RAG_SEARCH_HOST.",
    )
    search_timeout_s: float = Field(
        default=30.0, gt=0, description="Timeout of one call to the search API."
    )
    qdrant_api_key: str = Field(default="", description="API key of the Qdrant server, if any.")
    qdrant_path: Path = Field(
        default=Path(".cadenza/qdrant"),
        description="Folder of the embedded local Qdrant (used when `qdrant_url` is empty); "
        "':memory:' keeps it in memory.",
    )
    collection_prefix: str = Field(
        default="cadenza",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Prefix of every Qdrant collection name (one per tenant and collection).",
    )
    embed_batch_size: int = Field(
        default=32, ge=1, le=1024, description="Texts per model call (throughput vs latency)."
    )
    embed_threads: int = Field(
        default=0,
        ge=0,
        description="onnxruntime intra-op threads per model call; 0 = one per CPU core.",
    )
    max_tokens: int = Field(
        default=256,
        ge=16,
        le=512,
        description="Word pieces per text the model reads (all-MiniLM-L6-v2 was trained on "
        "256); longer chunks are truncated.",
    )
    upsert_batch_size: int = Field(
        default=256, ge=1, description="Points per write to the vector store."
    )
    default_mode: SearchMode = Field(
        default="vector",
        description="Ranking when a search does not choose: `vector` (cosine) or `hybrid` "
        "(vector and BM25 keyword ranks fused by reciprocal rank fusion). `vector` by "
        "default: hybrid did not beat it on examples/rag (bench/rag_eval.py, docs/rag.md).",
    )
