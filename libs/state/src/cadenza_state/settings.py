"""Connection settings for every state adapter (env prefix ``CADENZA_``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Schema names are interpolated into DDL (CREATE SCHEMA), so only plain identifiers pass.
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_DEFAULT_DATABASE_URL = "postgresql+asyncpg://cadenza:cadenza@127.0.0.1:15432/cadenza"
_DEFAULT_S3_SECRET = "cadenza-secret"


class StateSettings(BaseSettings):
    """Where runs, hot state and objects live. Defaults match `cadenza infra up`."""

    model_config = SettingsConfigDict(env_prefix="CADENZA_", extra="ignore")

    database_url: str = Field(
        default=_DEFAULT_DATABASE_URL,
        description="SQLAlchemy async URL: postgresql+asyncpg://… (production) or "
        "sqlite+aiosqlite:///path.db (dev, unit tests).",
    )
    database_schema: str | None = Field(
        default=None,
        description="PostgreSQL schema holding all tables and the Alembic version table "
        "(isolates tenants of one database, e.g. tests); None = the server's default (public).",
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        description="PostgreSQL connections a process keeps open once it needed them. The "
        "orchestrator applies a batch per partition at once (6 partitions of 2 topics) beside "
        "its sweeper and relay: with fewer, each busy moment opened and closed connections "
        "(a connect, the session setup and every prepared statement again).",
    )
    database_max_overflow: int = Field(
        default=10,
        ge=0,
        description="Connections opened beyond database_pool_size at a peak, closed on return.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:16379/0", description="Redis URL for hot state and pub/sub."
    )
    redis_key_prefix: str = Field(
        default="cadenza:", description="Prefix of every Redis key and pub/sub channel."
    )
    redis_backend: Literal["redis", "memory"] = Field(
        default="redis",
        description="`redis` = a real server at redis_url; `memory` = in-process fakeredis "
        "(`cadenza dev`, unit tests).",
    )
    object_store: Literal["s3", "local"] = Field(
        default="s3",
        description="`s3` = MinIO/S3 at s3_endpoint; `local` = files under object_store_dir (dev).",
    )
    object_store_dir: Path = Field(
        default=Path(".cadenza/objects"),
        description="Root folder of the local object store (object_store=local).",
    )
    s3_endpoint: str = Field(
        default="127.0.0.1:19000", description="MinIO/S3 endpoint as host:port (no scheme)."
    )
    s3_access_key: str = Field(default="cadenza", description="MinIO/S3 access key.")
    s3_secret_key: str = Field(default=_DEFAULT_S3_SECRET, description="MinIO/S3 secret key.")
    s3_secure: bool = Field(default=False, description="Use HTTPS to reach the S3 endpoint.")
    s3_bucket: str = Field(default="cadenza", description="Bucket for documents and payloads.")

    @field_validator("database_schema")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        if value is not None and not _SCHEMA_RE.fullmatch(value):
            raise ValueError("database_schema must match [a-z_][a-z0-9_]* (max 63 chars)")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def insecure_defaults(self) -> list[str]:
        """Fields still holding the well-known local credentials (services refuse these
        outside dev mode)."""
        found = []
        if not self.is_sqlite and "cadenza:cadenza@" in self.database_url:
            found.append("database_url")
        if self.object_store == "s3" and self.s3_secret_key == _DEFAULT_S3_SECRET:
            found.append("s3_secret_key")
        return found

    @classmethod
    def dev(cls, data_dir: Path) -> StateSettings:
        """Settings for `cadenza dev`: SQLite file, fakeredis and a local object folder."""
        return cls(
            database_url=f"sqlite+aiosqlite:///{data_dir / 'cadenza.db'}",
            redis_backend="memory",
            object_store="local",
            object_store_dir=data_dir / "objects",
        )
