"""API keys: ``cdz_<id>_<secret>``. The id is public (listings show ``cdz_<id>``); only an
HMAC-SHA256 of the secret is stored.

A fast keyed hash (stdlib ``hmac``), not a password KDF, on purpose: the secret is 256 bits
from ``secrets``, so there is nothing to brute-force, and a KDF's deliberate slowness would
be paid on every request. The optional pepper (``CADENZA_GATEWAY_AUTH_API_KEY_PEPPER``)
makes a stolen database alone useless for checking keys.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cadenza_state import ApiKeyRecord, direct, utcnow

__all__ = ["ApiKeyRecord", "IssuedKey"]
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

KEY_PREFIX = "cdz_"
_ID_BYTES = 6  # 12 hex characters: unique enough to index, short enough to show


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``token`` is the only time the secret is ever visible."""

    record: ApiKeyRecord
    token: str


def public_prefix(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}"


def hash_secret(secret: str, pepper: str = "") -> str:
    digest = hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed ``cdz_<id>_<secret>``, else None."""
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != 2 * _ID_BYTES or not secret:
        return None
    try:
        int(key_id, 16)
    except ValueError:
        return None
    return key_id, secret


class KeyFields(Protocol):
    """What checking a key reads of it: an ``ApiKeyRecord`` or a ``KeyCredential``."""

    @property
    def secret_hash(self) -> str: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def revoked_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class KeyCredential:
    """The columns of an API key that authenticating a request reads (``get_credential``)."""

    id: str
    tenant_id: str
    scopes: list[str]
    secret_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None


def verify_secret(record: KeyFields, secret: str, pepper: str = "") -> bool:
    return hmac.compare_digest(record.secret_hash, hash_secret(secret, pepper))


def is_active(record: KeyFields, now: datetime | None = None) -> bool:
    now = now or utcnow()
    if record.revoked_at is not None:
        return False
    return record.expires_at is None or record.expires_at > now


async def create_key(
    *,
    session: AsyncSession,
    tenant_id: str,
    name: str,
    scopes: Iterable[str],
    created_by: str,
    pepper: str = "",
    expires_in_s: int | None = None,
    rotated_from: str | None = None,
) -> IssuedKey:
    key_id = secrets.token_hex(_ID_BYTES)
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    record = ApiKeyRecord(
        id=key_id,
        tenant_id=tenant_id,
        name=name,
        scopes=sorted(set(scopes)),
        secret_hash=hash_secret(secret, pepper),
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in_s) if expires_in_s else None,
        rotated_from=rotated_from,
    )
    session.add(record)
    await session.flush()
    return IssuedKey(record=record, token=f"{public_prefix(key_id)}_{secret}")


# Built once: every authenticated request looks its key up (building a query costs about
# as much CPU as running it).
_KEY_BY_ID = select(ApiKeyRecord).where(ApiKeyRecord.id == bindparam("key_id"))


_CREDENTIAL = (
    "SELECT id, tenant_id, scopes, secret_hash, expires_at, revoked_at FROM api_keys WHERE id = $1"
)


async def get_credential(session: AsyncSession, key_id: str) -> KeyCredential | None:
    """The key a request presents, read fresh on every request (a revoked key stops
    working at once, on every gateway replica). On PostgreSQL one statement straight on
    asyncpg, with no transaction and no ORM instance: ~200 µs of the gateway's CPU less per
    authenticated request than ``get_key`` (a status poll is mostly this)."""
    if not direct.is_postgres(session):
        record = await get_key(session=session, key_id=key_id)
        if record is None:
            return None
        return KeyCredential(
            record.id,
            record.tenant_id,
            list(record.scopes),
            record.secret_hash,
            record.expires_at,
            record.revoked_at,
        )
    rows = await direct.fetch(session, _CREDENTIAL, key_id, alone=True)
    if not rows:
        return None
    key, tenant, scopes, secret_hash, expires_at, revoked_at = rows[0]
    return KeyCredential(
        key,
        tenant,
        json.loads(scopes) if isinstance(scopes, str) else list(scopes),
        secret_hash,
        _utc(expires_at),
        _utc(revoked_at),
    )


def _utc(moment: datetime | None) -> datetime | None:
    """As the ORM's ``UTCDateTime`` returns it."""
    return None if moment is None else moment.astimezone(UTC)


async def get_key(
    *, session: AsyncSession, key_id: str, tenant_id: str | None = None, for_update: bool = False
) -> ApiKeyRecord | None:
    if tenant_id is None and not for_update:
        return (await session.execute(_KEY_BY_ID, {"key_id": key_id})).scalar_one_or_none()
    query = select(ApiKeyRecord).where(ApiKeyRecord.id == key_id)
    if tenant_id is not None:
        query = query.where(ApiKeyRecord.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def list_keys(*, session: AsyncSession, tenant_id: str) -> Sequence[ApiKeyRecord]:
    query = (
        select(ApiKeyRecord)
        .where(ApiKeyRecord.tenant_id == tenant_id)
        .order_by(ApiKeyRecord.created_at, ApiKeyRecord.id)
    )
    return (await session.execute(query)).scalars().all()


def revoke(record: ApiKeyRecord) -> bool:
    """Revoke ``record`` (in the caller's transaction); False if it already was."""
    if record.revoked_at is not None:
        return False
    record.revoked_at = utcnow()
    return True


async def rotate_key(
    *, session: AsyncSession, record: ApiKeyRecord, created_by: str, pepper: str = ""
) -> IssuedKey:
    """A new key with the same tenant, name, scopes and lifetime; the old one is revoked."""
    lifetime = (
        int((record.expires_at - record.created_at).total_seconds())
        if record.expires_at is not None
        else None
    )
    revoke(record)
    return await create_key(
        session=session,
        tenant_id=record.tenant_id,
        name=record.name,
        scopes=record.scopes,
        created_by=created_by,
        pepper=pepper,
        expires_in_s=lifetime,
        rotated_from=record.id,
    )
