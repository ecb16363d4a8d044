"""Authenticated test clients: API keys created straight in the database.

``TenantKeys`` is an ``httpx.Auth``: every request gets ``Authorization: Bearer <key>`` of
an all-scope key of its tenant. Tests name the tenant to act as with the test-only header
``X-Tenant-Id`` (the gateway itself ignores that header; this auth flow strips it and
picks that tenant's key), defaulting to ``default``. A request that already carries an
``Authorization`` header is sent as it is.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable

import httpx
from cadenza_gateway.auth import ALL_SCOPES, create_key
from cadenza_runtime import Resources

TENANT_HEADER = "X-Tenant-Id"


async def issue_key(
    resources: Resources,
    tenant: str,
    scopes: Iterable[str] = ALL_SCOPES,
    *,
    name: str = "test",
    expires_in_s: int | None = None,
    pepper: str = "",
) -> str:
    """A new API key of ``tenant`` (as `cadenza keys bootstrap` makes them)."""
    async with resources.sessions() as session, session.begin():
        issued = await create_key(
            session=session,
            tenant_id=tenant,
            name=name,
            scopes=[str(s) for s in scopes],
            created_by="test",
            expires_in_s=expires_in_s,
            pepper=pepper,
        )
    return issued.token


class TenantKeys(httpx.Auth):
    """One all-scope key per tenant, created on first use."""

    def __init__(self, resources: Resources, default_tenant: str = "default") -> None:
        self.resources = resources
        self.default_tenant = default_tenant
        self.keys: dict[str, str] = {}

    async def key(self, tenant: str) -> str:
        if tenant not in self.keys:
            self.keys[tenant] = await issue_key(self.resources, tenant)
        return self.keys[tenant]

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tenant = request.headers.pop(TENANT_HEADER, None) or self.default_tenant
        if "authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {await self.key(tenant)}"
        yield request
