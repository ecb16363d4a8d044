"""Provider keys per tenant (BYOK): envelope-encrypted at rest, never returned."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
import pytest_asyncio
from cadenza_gateway import GatewaySettings, create_app
from cadenza_gateway.auth import AuthSettings
from cadenza_runtime import Resources
from cadenza_state import (
    AuditLogEntry,
    EnvelopeCipher,
    ProviderKeyRecord,
    SecretCorrupted,
    SecretsSettings,
    SecretsUnavailable,
    provider_credentials,
)
from pydantic import SecretStr
from sqlalchemy import select
from support.auth import TenantKeys

SECRET = "sk-live-THIS-MUST-NEVER-LEAK-1234"
MASTER = base64.b64encode(os.urandom(32)).decode()
A = {"X-Tenant-Id": "acme"}


def secrets(master: str = MASTER, kid: str = "k1", **previous: str) -> SecretsSettings:
    return SecretsSettings(
        master_key=SecretStr(master),
        master_key_id=kid,
        previous_master_keys={k: SecretStr(v) for k, v in previous.items()},
    )


@pytest_asyncio.fixture
async def byok(resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(auth=AuthSettings(secrets=secrets()))
    transport = httpx.ASGITransport(app=create_app(resources, settings))
    auth = TenantKeys(resources)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", auth=auth) as client:
        yield client


async def test_a_key_is_stored_encrypted_and_never_returned(
    byok: httpx.AsyncClient, resources: Resources
) -> None:
    body = {"base_url": "https://api.openai.com/v1/", "api_key": SECRET}
    created = await byok.put("/v1/provider-keys/openai", json=body, headers=A)
    assert created.status_code == 201, created.text
    assert created.json()["base_url"] == "https://api.openai.com/v1"
    replaced = await byok.put(
        "/v1/provider-keys/openai", json={**body, "api_key": SECRET + "-2"}, headers=A
    )
    assert replaced.status_code == 200
    listed = await byok.get("/v1/provider-keys", headers=A)
    assert [k["name"] for k in listed.json()["items"]] == ["openai"]
    audit = await byok.get("/v1/audit", headers=A)
    for resp in (created, replaced, listed, audit):
        assert "sk-live" not in resp.text
    assert {e["action"] for e in audit.json()["items"]} >= {"provider_key.set"}

    async with resources.sessions() as session:
        row = (await session.execute(select(ProviderKeyRecord))).scalar_one()
        entries = (await session.execute(select(AuditLogEntry))).scalars().all()
        assert b"sk-live" not in row.ciphertext
        assert all("sk-live" not in str(e.data) for e in entries)
        # What a worker does for a run of acme: the decrypted key, repr-safe.
        creds = await provider_credentials(
            session=session, cipher=EnvelopeCipher(secrets()), tenant_id="acme", name="openai"
        )
        assert creds is not None
        assert creds.api_key == SECRET + "-2"
        assert creds.base_url == "https://api.openai.com/v1"
        assert "sk-live" not in repr(creds)
        # Another tenant has no such provider.
        assert (
            await provider_credentials(
                session=session, cipher=EnvelopeCipher(secrets()), tenant_id="other", name="openai"
            )
            is None
        )


async def test_validation_problems_never_echo_the_key(byok: httpx.AsyncClient) -> None:
    for body in (
        {"base_url": "ftp://nope", "api_key": SECRET},
        {"base_url": "https://x.test/v1", "api_key": SECRET, "extra": SECRET},
        {"base_url": "https://x.test/v1", "api_key": SECRET * 200},
    ):
        resp = await byok.put("/v1/provider-keys/openai", json=body)
        assert resp.status_code == 422
        assert "sk-live" not in resp.text
    reserved = await byok.put(
        "/v1/provider-keys/local", json={"base_url": "https://x.test", "api_key": "k"}
    )
    assert reserved.status_code == 422


async def test_delete_and_tenant_isolation(byok: httpx.AsyncClient) -> None:
    body = {"base_url": "https://x.test/v1", "api_key": SECRET}
    assert (await byok.put("/v1/provider-keys/mine", json=body, headers=A)).status_code == 201
    assert (await byok.get("/v1/provider-keys")).json()["items"] == []  # tenant default
    assert (await byok.delete("/v1/provider-keys/mine")).status_code == 404
    assert (await byok.delete("/v1/provider-keys/mine", headers=A)).status_code == 204
    assert (await byok.get("/v1/provider-keys", headers=A)).json()["items"] == []


async def test_without_a_master_key_provider_keys_are_disabled(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.put(
        "/v1/provider-keys/openai", json={"base_url": "https://x.test", "api_key": SECRET}
    )
    assert resp.status_code == 503
    assert resp.json()["type"] == "urn:cadenza:problem:provider-keys-disabled"
    assert "sk-live" not in resp.text


def test_envelope_encryption_binds_rows_and_rotates_master_keys() -> None:
    cipher = EnvelopeCipher(secrets())
    sealed = cipher.seal(SECRET, "provider-key/acme/openai")
    assert cipher.open(sealed, "provider-key/acme/openai") == SECRET
    with pytest.raises(SecretCorrupted):  # copied into another tenant's row
        cipher.open(sealed, "provider-key/other/openai")
    # Flip a bit of the last byte: setting it to 0 left the ciphertext unchanged whenever
    # the random byte was 0 already (1 run in 256; CI saw it).
    last = sealed.ciphertext[-1] ^ 0x01
    tampered = replace(sealed, ciphertext=sealed.ciphertext[:-1] + bytes([last]))
    with pytest.raises(SecretCorrupted):
        cipher.open(tampered, "provider-key/acme/openai")
    # Rotation: a new master key, the old one kept to decrypt what it wrapped.
    new_master = base64.b64encode(os.urandom(32)).decode()
    rotated = EnvelopeCipher(secrets(new_master, "k2", k1=MASTER))
    assert rotated.open(sealed, "provider-key/acme/openai") == SECRET
    assert rotated.seal(SECRET, "a").master_key_id == "k2"
    with pytest.raises(SecretsUnavailable):
        EnvelopeCipher(secrets(new_master, "k2")).open(sealed, "provider-key/acme/openai")
    with pytest.raises(SecretsUnavailable):
        EnvelopeCipher(SecretsSettings()).seal(SECRET, "a")
    with pytest.raises(ValueError, match="32 bytes"):
        secrets(base64.b64encode(b"short").decode())
