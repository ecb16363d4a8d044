"""/v1/api-keys: a tenant's admins create, list, rotate and revoke its API keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from ... import crud
from ...auth import AdminPrincipal, Principal
from ...auth import keys as api_keys
from ...auth.models import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ApiKeysPublic
from ...auth.problems import ApiKeyNotFound, ScopeNotHeld
from ...auth.scopes import grants
from ...problems import problem_responses
from ..deps import SessionDep, SettingsDep, require_json

router = APIRouter(
    prefix="/v1/api-keys",
    tags=["api-keys"],
    responses=problem_responses(401, 403, 422),
)

KeyIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{12}$", description="Key id (`cdz_<id>` without `cdz_`).")
]


def _created(issued: api_keys.IssuedKey) -> ApiKeyCreated:
    public = ApiKeyPublic.from_record(issued.record, active=True)
    return ApiKeyCreated(**public.model_dump(), key=issued.token)


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Create an API key",
    dependencies=[Depends(require_json)],
    responses=problem_responses(415),
)
async def create_api_key(
    body: ApiKeyCreate, session: SessionDep, settings: SettingsDep, principal: AdminPrincipal
) -> ApiKeyCreated:
    """A key of the caller's tenant; the response is the only time its secret is shown."""
    missing = grants(principal.scopes, body.scopes)
    if missing:
        raise ScopeNotHeld(f"cannot grant scopes the caller does not hold: {missing}")
    async with session.begin():
        issued = await api_keys.create_key(
            session=session,
            tenant_id=principal.tenant,
            name=body.name,
            scopes=[s.value for s in body.scopes],
            created_by=principal.subject,
            pepper=settings.auth.api_key_pepper.get_secret_value(),
            expires_in_s=body.expires_in_s,
        )
        _audit(session, principal, "api_key.created", issued.record.id, body.scopes)
    return _created(issued)


@router.get("", response_model=ApiKeysPublic, summary="List API keys (prefixes only)")
async def list_api_keys(session: SessionDep, principal: AdminPrincipal) -> ApiKeysPublic:
    records = await api_keys.list_keys(session=session, tenant_id=principal.tenant)
    return ApiKeysPublic(
        items=[ApiKeyPublic.from_record(r, active=api_keys.is_active(r)) for r in records]
    )


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Rotate an API key",
    responses=problem_responses(404),
)
async def rotate_api_key(
    key_id: KeyIdPath, session: SessionDep, settings: SettingsDep, principal: AdminPrincipal
) -> ApiKeyCreated:
    """A new key with the same name, scopes and lifetime; the old one stops working now."""
    async with session.begin():
        record = await _key(session, principal, key_id)
        issued = await api_keys.rotate_key(
            session=session,
            record=record,
            created_by=principal.subject,
            pepper=settings.auth.api_key_pepper.get_secret_value(),
        )
        _audit(session, principal, "api_key.rotated", key_id, record.scopes, new=issued.record.id)
    return _created(issued)


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API key",
    responses=problem_responses(404),
)
async def revoke_api_key(
    key_id: KeyIdPath, session: SessionDep, principal: AdminPrincipal
) -> Response:
    """The key stops working at once (idempotent; the key stays listed as revoked)."""
    async with session.begin():
        record = await _key(session, principal, key_id)
        if api_keys.revoke(record):
            _audit(session, principal, "api_key.revoked", key_id, record.scopes)
    return Response(status_code=204)


async def _key(session: SessionDep, principal: Principal, key_id: str) -> api_keys.ApiKeyRecord:
    record = await api_keys.get_key(
        session=session, key_id=key_id, tenant_id=principal.tenant, for_update=True
    )
    if record is None:
        raise ApiKeyNotFound(f"no API key {api_keys.public_prefix(key_id)!r}")
    return record


def _audit(
    session: SessionDep,
    principal: Principal,
    action: str,
    key_id: str,
    scopes: Sequence[str],
    **extra: str,
) -> None:
    crud.record_audit(
        session=session,
        tenant_id=principal.tenant,
        action=action,
        subject=f"api_key:{key_id}",
        data={"scopes": [str(s) for s in scopes], **extra},
        actor=principal.subject,
    )
