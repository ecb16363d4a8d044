"""Settings of the rag-ingest service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class RagSettings(BaseSettings):
    """Env prefix ``CADENZA_RAG_``. Where vectors live: ``CADENZA_RETRIEVAL_*``."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_RAG_", extra="ignore")

    chunk_chars: int = Field(default=1000, ge=100, description="Target chunk size in characters.")
    overlap_chars: int = Field(
        default=150, ge=0, description="Characters shared by neighbouring chunks."
    )
    concurrency: int = Field(default=4, ge=1, description="Documents ingested at once.")
    max_document_bytes: int = Field(
        default=25 * MIB,
        gt=0,
        description="Largest document ingested; larger ones (e.g. referenced by upstream "
        "doc.ingest events) end `failed`.",
    )
    max_chunks: int = Field(
        default=20_000, gt=0, description="Most chunks one document may produce."
    )
    metrics_port: int = Field(
        default=9103, ge=0, description="Prometheus /metrics port (0 disables)."
    )
    search_port: int = Field(
        default=9113,
        ge=0,
        description="Port of the search API (POST /v1/search) that gateways and workers "
        "use through CADENZA_RETRIEVAL_SEARCH_URL; 0 disables it.",
    )
    search_host: str = Field(
        default="127.0.0.1",
        description="Address the search API binds to: internal only (it trusts X-Tenant-Id "
        "from callers holding CADENZA_RETRIEVAL_SEARCH_TOKEN; without a token, loopback only).",
    )
