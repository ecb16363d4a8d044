"""The auth dependency: every route declares the scope it needs in its signature.

``tenant: CanReadRuns`` authenticates the caller (API key, JWT, or — in dev mode only —
no credential), checks the scope, and gives the route the tenant *of the credential*.
``Security`` puts the bearer scheme and the scope on the operation in the OpenAPI document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

from cadenza_runtime import Resources
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from opentelemetry import trace
from starlette.requests import HTTPConnection

from . import keys
from .principal import Principal, current_principal
from .problems import InsufficientScope, Unauthenticated
from .scopes import ALL_SCOPES, Scope, grants, parse_scopes

if TYPE_CHECKING:
    from ..settings import GatewaySettings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="API key (cdz_…) or JWT",
    description="`Authorization: Bearer <credential>`: an API key (`cdz_<id>_<secret>`, "
    "see /v1/api-keys) or an access token from the configured OIDC identity provider. "
    "The credential decides the tenant.",
)

_STATE_KEY = "principal"


def _settings(conn: HTTPConnection) -> GatewaySettings:
    return cast("GatewaySettings", conn.app.state.settings)


async def authenticate(conn: HTTPConnection, token: str | None) -> Principal:
    """The caller behind ``token`` (once per request: cached on the connection state)."""
    cached = conn.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(cached, Principal):
        return cached
    settings = _settings(conn)
    if not token:
        if not settings.auth.anonymous_access:
            raise Unauthenticated(
                "send a credential: `Authorization: Bearer <API key or token>`", error=""
            )
        principal = Principal(
            tenant=settings.default_tenant,
            scopes=ALL_SCOPES,
            kind="anonymous",
            subject="anonymous",
        )
    elif token.startswith(keys.KEY_PREFIX):
        principal = await _from_api_key(conn, token)
    else:
        verifier = getattr(conn.app.state, "jwt_verifier", None)
        if verifier is None:
            raise Unauthenticated("unknown credential: not an API key, and JWTs are not enabled")
        principal = await verifier.principal(token)
    conn.scope.setdefault("state", {})[_STATE_KEY] = principal
    current_principal.set(principal)
    span = trace.get_current_span()
    span.set_attribute("cadenza.tenant_id", principal.tenant)
    span.set_attribute("enduser.id", principal.subject)
    limiter = getattr(conn.app.state, "rate_limiter", None)
    if limiter is not None:
        await limiter.check(principal, conn.scope)
    return principal


async def _from_api_key(conn: HTTPConnection, token: str) -> Principal:
    parts = keys.split_token(token)
    if parts is None:
        raise Unauthenticated("malformed API key")
    key_id, secret = parts
    resources = cast(Resources, conn.app.state.resources)
    async with resources.reads() as session:  # one statement, no transaction around it
        record = await keys.get_credential(session, key_id)
    pepper = _settings(conn).auth.api_key_pepper.get_secret_value()
    if record is None or not keys.verify_secret(record, secret, pepper):
        raise Unauthenticated("unknown API key")
    if record.revoked_at is not None:
        raise Unauthenticated(f"API key {keys.public_prefix(key_id)} was revoked")
    if not keys.is_active(record):
        raise Unauthenticated(f"API key {keys.public_prefix(key_id)} has expired")
    return Principal(
        tenant=record.tenant_id,
        scopes=parse_scopes(record.scopes),
        kind="api_key",
        subject=f"key:{record.id}",
        key_id=record.id,
    )


def authorize(principal: Principal, needed: list[str]) -> Principal:
    missing = grants(principal.scopes, needed)
    if missing:
        raise InsufficientScope(missing)
    return principal


async def get_principal(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    token = credentials.credentials if credentials is not None else None
    return authorize(await authenticate(request, token), security_scopes.scopes)


async def get_tenant(principal: Annotated[Principal, Security(get_principal)]) -> str:
    return principal.tenant


def _tenant_with(scope: Scope) -> object:
    return Security(get_tenant, scopes=[scope.value])


# ``tenant: CanReadRuns`` — the caller's tenant, once it has proved it holds the scope.
CanReadRuns = Annotated[str, _tenant_with(Scope.RUNS_READ)]
CanWriteRuns = Annotated[str, _tenant_with(Scope.RUNS_WRITE)]
CanReadWorkflows = Annotated[str, _tenant_with(Scope.WORKFLOWS_READ)]
CanWriteWorkflows = Annotated[str, _tenant_with(Scope.WORKFLOWS_WRITE)]
CanReadTriggers = Annotated[str, _tenant_with(Scope.TRIGGERS_READ)]
CanWriteTriggers = Annotated[str, _tenant_with(Scope.TRIGGERS_WRITE)]
CanSendEvents = Annotated[str, _tenant_with(Scope.EVENTS_WRITE)]
CanReadAgents = Annotated[str, _tenant_with(Scope.AGENTS_READ)]
CanWriteAgents = Annotated[str, _tenant_with(Scope.AGENTS_WRITE)]
CanReadDatasets = Annotated[str, _tenant_with(Scope.DATASETS_READ)]
CanWriteDatasets = Annotated[str, _tenant_with(Scope.DATASETS_WRITE)]
CanReadDocuments = Annotated[str, _tenant_with(Scope.DOCUMENTS_READ)]
CanWriteDocuments = Annotated[str, _tenant_with(Scope.DOCUMENTS_WRITE)]
CanReadUsage = Annotated[str, _tenant_with(Scope.USAGE_READ)]
CanAnswerApprovals = Annotated[str, _tenant_with(Scope.APPROVALS_WRITE)]
# The whole principal (admin routes record who acted).
AdminPrincipal = Annotated[Principal, Security(get_principal, scopes=[Scope.ADMIN.value])]


def bearer_token(conn: HTTPConnection) -> str | None:
    """The bearer credential of a connection (WebSockets, where ``Security`` is not used)."""
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
