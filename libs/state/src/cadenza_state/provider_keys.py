"""Tenants' own LLM provider endpoints and keys (BYOK): written by the gateway, read by the
worker for the run's tenant. Data functions; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from cadenza_state.models import ProviderKeyRecord
from cadenza_state.secrets import EnvelopeCipher, SealedSecret
from cadenza_state.types import utcnow


@dataclass(frozen=True)
class ProviderCredentials:
    """Decrypted, for the one call that needs it: never log, trace or return it."""

    name: str
    base_url: str
    api_key: str

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"ProviderCredentials(name={self.name!r}, base_url={self.base_url!r}, api_key=***)"


def _associated(tenant_id: str, name: str) -> str:
    return f"provider-key/{tenant_id}/{name}"


async def put_provider_key(
    *,
    session: AsyncSession,
    cipher: EnvelopeCipher,
    tenant_id: str,
    name: str,
    base_url: str,
    api_key: str,
) -> tuple[ProviderKeyRecord, bool]:
    """Store (or replace) the tenant's ``name`` provider; True when it is new."""
    sealed = cipher.seal(api_key, _associated(tenant_id, name))
    record = await get_provider_key_record(
        session=session, tenant_id=tenant_id, name=name, for_update=True
    )
    created = record is None
    if record is None:
        record = ProviderKeyRecord(tenant_id=tenant_id, name=name)
        session.add(record)
    record.base_url = base_url
    record.ciphertext = sealed.ciphertext
    record.wrapped_key = sealed.wrapped_key
    record.master_key_id = sealed.master_key_id
    record.updated_at = utcnow()
    await session.flush()
    return record, created


async def get_provider_key_record(
    *, session: AsyncSession, tenant_id: str, name: str, for_update: bool = False
) -> ProviderKeyRecord | None:
    query = select(ProviderKeyRecord).where(
        ProviderKeyRecord.tenant_id == tenant_id, ProviderKeyRecord.name == name
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_provider_keys(
    *, session: AsyncSession, tenant_id: str
) -> Sequence[ProviderKeyRecord]:
    query = (
        select(ProviderKeyRecord)
        .where(ProviderKeyRecord.tenant_id == tenant_id)
        .order_by(ProviderKeyRecord.name)
    )
    return (await session.execute(query)).scalars().all()


async def delete_provider_key(*, session: AsyncSession, tenant_id: str, name: str) -> bool:
    result = await session.execute(
        delete(ProviderKeyRecord).where(
            ProviderKeyRecord.tenant_id == tenant_id, ProviderKeyRecord.name == name
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def provider_credentials(
    *, session: AsyncSession, cipher: EnvelopeCipher, tenant_id: str, name: str
) -> ProviderCredentials | None:
    """The tenant's ``name`` provider, decrypted (None when the tenant has none)."""
    record = await get_provider_key_record(session=session, tenant_id=tenant_id, name=name)
    if record is None:
        return None
    sealed = SealedSecret(record.ciphertext, record.wrapped_key, record.master_key_id)
    api_key = cipher.open(sealed, _associated(tenant_id, name))
    return ProviderCredentials(name=name, base_url=record.base_url, api_key=api_key)
