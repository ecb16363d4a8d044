"""Bring-your-own provider keys: an agent's ``<name>:<model>`` runs on the run's tenant's own
endpoint when the tenant stored one under ``<name>`` (``PUT /v1/provider-keys/<name>``), else
on the deployment's provider of that name (``CADENZA_LLM_PROVIDERS``).

The key is decrypted with the master key (``CADENZA_SECRETS_MASTER_KEY``) only here, kept in
the provider's HTTP client headers, and never logged, put on a span or in an error: the
provider redacts it from server messages, and the errors raised here name the tenant's
provider, never its key. Lookups are cached ``ttl_s`` per (tenant, name), so a rotated or
deleted key takes effect within that time without a database read per LLM turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from cadenza_llm import OpenAIProviderSettings, Provider, ProviderRegistry
from cadenza_llm.errors import AuthError
from cadenza_state import EnvelopeCipher, provider_credentials
from cadenza_state.secrets import SecretCorrupted, SecretsUnavailable
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import metrics

log = logging.getLogger("cadenza.worker.byok")

RESERVED = frozenset({"local", "replay"})


@dataclass
class _Entry:
    provider: Provider | None  # None: the tenant has no endpoint of that name
    fingerprint: str
    expires_at: float


class TenantProviders:
    """``await resolve(tenant_id, "acme-openai:gpt-4o-mini")`` -> (provider, model)."""

    def __init__(
        self,
        llm: ProviderRegistry,
        sessions: async_sessionmaker[AsyncSession],
        cipher: EnvelopeCipher,
        *,
        ttl_s: float = 30.0,
    ) -> None:
        self._llm = llm
        self._sessions = sessions
        self._cipher = cipher
        self._ttl_s = ttl_s
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # A replaced provider may still serve a call in flight: closed on aclose, not at once.
        self._retired: list[Provider] = []

    async def resolve(self, tenant_id: str, spec: str) -> tuple[Provider, str]:
        name, sep, model = spec.partition(":")
        if not sep or not model or name in RESERVED or self._llm.replays_everything:
            return self._llm.resolve(spec)
        provider = await self._tenant_provider(tenant_id, name)
        if provider is None:
            metrics.PROVIDER_RESOLUTIONS.labels("deployment").inc()
            return self._llm.resolve(spec)
        metrics.PROVIDER_RESOLUTIONS.labels("tenant").inc()
        return provider, model

    async def _tenant_provider(self, tenant_id: str, name: str) -> Provider | None:
        key = (tenant_id, name)
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at > time.monotonic():
            return entry.provider
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires_at > time.monotonic():
                return entry.provider
            entry = await self._load(tenant_id, name, entry)
            self._entries[key] = entry
            return entry.provider

    async def _load(self, tenant_id: str, name: str, previous: _Entry | None) -> _Entry:
        try:
            async with self._sessions() as session:
                credentials = await provider_credentials(
                    session=session, cipher=self._cipher, tenant_id=tenant_id, name=name
                )
        except (SecretsUnavailable, SecretCorrupted) as exc:
            # Names the tenant's provider and the reason, never the key.
            log.warning("tenant %s provider %r does not decrypt: %s", tenant_id, name, exc)
            raise AuthError(f"the tenant's provider key {name!r} cannot be used: {exc}") from None
        expires_at = time.monotonic() + self._ttl_s
        if credentials is None:
            fingerprint = ""
        else:
            # A digest, so the cache can tell a changed key without holding a second copy.
            fingerprint = hashlib.sha256(
                f"{credentials.base_url}\0{credentials.api_key}".encode()
            ).hexdigest()
        if previous is not None and previous.fingerprint == fingerprint:
            return _Entry(previous.provider, fingerprint, expires_at)
        if previous is not None and previous.provider is not None:
            self._retired.append(previous.provider)
        if credentials is None:
            return _Entry(None, fingerprint, expires_at)
        endpoint = OpenAIProviderSettings(
            base_url=credentials.base_url, api_key=SecretStr(credentials.api_key)
        )
        return _Entry(self._llm.endpoint_provider(name, endpoint), fingerprint, expires_at)

    async def aclose(self) -> None:
        providers = [e.provider for e in self._entries.values() if e.provider is not None]
        providers += self._retired
        self._entries.clear()
        self._retired.clear()
        for provider in providers:
            await provider.aclose()
