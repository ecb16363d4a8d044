"""/v1/provider-keys: a tenant's own OpenAI-compatible endpoints and keys (BYOK).

The key is envelope-encrypted before it reaches the database and is never returned,
logged or put in a span or an error: the request model holds it as a ``SecretStr``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from cadenza_llm.settings import RESERVED_PROVIDERS
from cadenza_state import (
    EnvelopeCipher,
    ProviderKeyRecord,
    delete_provider_key,
    list_provider_keys,
    put_provider_key,
)
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ... import crud
from ...auth import AdminPrincipal
from ...problems import FieldProblem, InvalidRequest, ProblemError, problem_responses
from ..deps import SessionDep, require_json

router = APIRouter(
    prefix="/v1/provider-keys",
    tags=["provider-keys"],
    responses=problem_responses(401, 403, 422, 503),
)

NamePath = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Provider name, as in an agent's `model: <name>:<model>` (`local` and "
        "`replay` are reserved).",
    ),
]


class ProviderKeyPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        max_length=1024,
        pattern=r"^https?://[^\s\x00-\x1f]+$",
        description="Base URL up to the API version, e.g. https://api.openai.com/v1.",
    )
    api_key: SecretStr = Field(
        min_length=1, max_length=4096, description="The key; write-only, never returned."
    )


class ProviderKeyPublic(BaseModel):
    name: str
    base_url: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: ProviderKeyRecord) -> ProviderKeyPublic:
        return cls(
            name=record.name,
            base_url=record.base_url,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class ProviderKeysPublic(BaseModel):
    items: list[ProviderKeyPublic]


class ProviderKeysDisabled(ProblemError):
    status, slug, title = 503, "provider-keys-disabled", "Provider keys not configured"


class ProviderKeyNotFound(ProblemError):
    status, slug, title = 404, "provider-key-not-found", "Provider key not found"


async def get_cipher(request: Request) -> EnvelopeCipher:  # async: no thread-pool hop
    cipher = cast(EnvelopeCipher, request.app.state.cipher)
    if not cipher.configured:
        raise ProviderKeysDisabled(
            "this deployment stores no provider keys: its operator must set "
            "CADENZA_SECRETS_MASTER_KEY"
        )
    return cipher


CipherDep = Annotated[EnvelopeCipher, Depends(get_cipher)]


@router.put(
    "/{name}",
    response_model=ProviderKeyPublic,
    summary="Store or replace a provider endpoint and key",
    dependencies=[Depends(require_json)],
    responses={201: {"model": ProviderKeyPublic, "description": "Stored"}},
)
async def put_key(
    name: NamePath,
    body: ProviderKeyPut,
    response: Response,
    session: SessionDep,
    principal: AdminPrincipal,
    cipher: CipherDep,
) -> ProviderKeyPublic:
    """Runs of the tenant whose agents use `<name>:<model>` call this endpoint with this key."""
    if name in RESERVED_PROVIDERS:
        message = f"path.name: {name!r} is reserved (the built-in providers)"
        raise InvalidRequest(
            message, errors=[FieldProblem(field="path.name", code="invalid_field", message=message)]
        )
    async with session.begin():
        record, created = await put_provider_key(
            session=session,
            cipher=cipher,
            tenant_id=principal.tenant,
            name=name,
            base_url=body.base_url.rstrip("/"),
            api_key=body.api_key.get_secret_value(),
        )
        crud.record_audit(
            session=session,
            tenant_id=principal.tenant,
            action="provider_key.set",
            subject=f"provider_key:{name}",
            data={"base_url": record.base_url, "created": created},
        )
    response.status_code = 201 if created else 200
    return ProviderKeyPublic.from_record(record)


@router.get("", response_model=ProviderKeysPublic, summary="List provider endpoints")
async def list_keys(session: SessionDep, principal: AdminPrincipal) -> ProviderKeysPublic:
    records = await list_provider_keys(session=session, tenant_id=principal.tenant)
    return ProviderKeysPublic(items=[ProviderKeyPublic.from_record(r) for r in records])


@router.delete(
    "/{name}",
    status_code=204,
    response_class=Response,
    summary="Delete a provider endpoint and key",
    responses=problem_responses(404),
)
async def delete_key(name: NamePath, session: SessionDep, principal: AdminPrincipal) -> Response:
    async with session.begin():
        if not await delete_provider_key(session=session, tenant_id=principal.tenant, name=name):
            raise ProviderKeyNotFound(f"no provider key {name!r}")
        crud.record_audit(
            session=session,
            tenant_id=principal.tenant,
            action="provider_key.deleted",
            subject=f"provider_key:{name}",
        )
    return Response(status_code=204)
