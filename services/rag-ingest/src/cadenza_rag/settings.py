"""Settings of the rag-ingest service."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RagSettings(BaseSettings):
    """Env prefix ``CADENZA_RAG_``."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_RAG_", extra="ignore")

    chunk_chars: int = Field(default=1200, ge=100, description="Target chunk size in characters.")
    overlap_chars: int = Field(
        default=200, ge=0, description="Characters shared by neighbouring chunks."
    )
    concurrency: int = Field(default=4, ge=1, description="Documents ingested at once.")
    metrics_port: int = Field(
        default=9103, ge=0, description="Prometheus /metrics port (0 disables)."
    )
