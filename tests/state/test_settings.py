"""StateSettings: defaults, env overrides, validation and the dev profile."""

from __future__ import annotations

from pathlib import Path

import pytest
from cadenza_state import StateSettings
from pydantic import ValidationError

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in StateSettings.model_fields:
        monkeypatch.delenv(f"CADENZA_{name.upper()}", raising=False)


def test_defaults_point_at_cadenza_infra() -> None:
    s = StateSettings()
    assert s.database_url == "postgresql+asyncpg://cadenza:cadenza@127.0.0.1:15432/cadenza"
    assert s.database_schema is None
    assert (s.redis_url, s.redis_key_prefix, s.redis_backend) == (
        "redis://127.0.0.1:16379/0",
        "cadenza:",
        "redis",
    )
    assert (s.s3_endpoint, s.s3_access_key, s.s3_secret_key) == (
        "127.0.0.1:19000",
        "cadenza",
        "cadenza-secret",
    )
    assert (s.s3_secure, s.s3_bucket, s.object_store) == (False, "cadenza", "s3")


def test_every_field_is_documented() -> None:
    missing = [n for n, f in StateSettings.model_fields.items() if not f.description]
    assert missing == []


def test_env_prefix_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_DATABASE_SCHEMA", "tenant_a")
    monkeypatch.setenv("CADENZA_REDIS_BACKEND", "memory")
    monkeypatch.setenv("CADENZA_S3_SECURE", "true")
    s = StateSettings()
    assert (s.database_schema, s.redis_backend, s.s3_secure) == ("tenant_a", "memory", True)


@pytest.mark.parametrize("schema", ["Public", "a-b", 'x"; drop', "1abc", "a" * 64])
def test_unsafe_schema_names_are_rejected(schema: str) -> None:
    with pytest.raises(ValidationError):
        StateSettings(database_schema=schema)


def test_unknown_backends_are_rejected() -> None:
    with pytest.raises(ValidationError):
        StateSettings(redis_backend="valkey")
    with pytest.raises(ValidationError):
        StateSettings(object_store="gcs")


def test_dev_profile_needs_no_services(tmp_path: Path) -> None:
    s = StateSettings.dev(tmp_path)
    assert s.is_sqlite
    assert s.database_url.endswith(str(tmp_path / "cadenza.db"))
    assert (s.redis_backend, s.object_store, s.object_store_dir) == (
        "memory",
        "local",
        tmp_path / "objects",
    )
    assert s.insecure_defaults() == []


def test_insecure_defaults_are_reported() -> None:
    assert StateSettings().insecure_defaults() == ["database_url", "s3_secret_key"]
    safe = StateSettings(
        database_url="postgresql+asyncpg://app:s3cret@db/cadenza", s3_secret_key="long-random"
    )
    assert safe.insecure_defaults() == []
