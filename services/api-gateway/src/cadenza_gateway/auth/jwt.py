"""JWT bearer tokens from an OIDC identity provider, checked with PyJWT against its JWKS.

The signing keys are fetched (async) from ``jwt_jwks_url`` and cached for
``jwks_cache_s``; a token whose ``kid`` is unknown triggers a refetch (the provider rotated
its keys), at most every ``jwks_min_refresh_s`` so garbage tokens cannot hammer it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import httpx
import jwt

from ..problems import ProblemError
from .principal import Principal
from .problems import Unauthenticated
from .scopes import parse_scopes
from .settings import AuthSettings

log = logging.getLogger("cadenza.gateway.auth")
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class IdentityProviderUnavailable(ProblemError):
    """503: the token may be fine, but its signing key cannot be fetched right now."""

    status, slug, title = 503, "identity-provider-unavailable", "Identity provider unavailable"


class JwksCache:
    """The provider's signing keys by ``kid``."""

    def __init__(self, settings: AuthSettings, client: httpx.AsyncClient | None = None) -> None:
        self.url = settings.jwt_jwks_url
        self.cache_s = settings.jwks_cache_s
        self.min_refresh_s = settings.jwks_min_refresh_s
        self.client = client or httpx.AsyncClient(timeout=5.0)
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = float("-inf")
        self.attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> jwt.PyJWK | None:
        if self._due(kid):
            async with self._lock:
                if self._due(kid):  # not refetched by a concurrent request meanwhile
                    await self._fetch()
        if not self.keys:
            raise IdentityProviderUnavailable(
                "the identity provider's signing keys cannot be fetched; retry later",
                headers={"Retry-After": str(max(1, round(self.min_refresh_s)))},
            )
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return self.keys.get(kid) if kid is not None else None

    def _due(self, kid: str | None) -> bool:
        now = time.monotonic()
        if now - self.attempted_at < self.min_refresh_s:
            return False
        return now - self.fetched_at > self.cache_s or kid not in self.keys

    async def _fetch(self) -> None:
        self.attempted_at = time.monotonic()
        try:
            resp = await self.client.get(self.url)
            resp.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(resp.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("cannot fetch the JWKS at %s: %s", self.url, exc)
            return  # keep serving with the keys we have, if any
        self.keys = {k.key_id: k for k in keys if k.key_id}
        if len(keys) == 1 and not keys[0].key_id:
            self.keys = {"": keys[0]}
        self.fetched_at = time.monotonic()

    async def aclose(self) -> None:
        await self.client.aclose()


class JwtVerifier:
    """Access token → :class:`Principal` (tenant and scopes from configurable claims)."""

    def __init__(self, settings: AuthSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.jwks = JwksCache(settings, client)

    async def principal(self, token: str) -> Principal:
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token: neither an API key nor a JWT") from None
        if header.get("alg") not in s.jwt_algorithms:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not accepted")
        key = await self.jwks.get(header.get("kid"))
        if key is None:
            raise Unauthenticated(f"token signed by an unknown key {header.get('kid')!r}")
        required = (
            ["exp", "sub"] + (["iss"] if s.jwt_issuer else []) + (["aud"] if s.jwt_audience else [])
        )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=s.jwt_algorithms,
                audience=s.jwt_audience or None,
                issuer=s.jwt_issuer or None,
                leeway=s.jwt_leeway_s,
                options={"require": required, "verify_aud": bool(s.jwt_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        tenant = claims.get(s.jwt_tenant_claim)
        if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
            raise Unauthenticated(f"token has no valid tenant claim {s.jwt_tenant_claim!r}")
        return Principal(
            tenant=tenant,
            scopes=parse_scopes(_scope_values(claims.get(s.jwt_scopes_claim))),
            kind="jwt",
            subject=f"jwt:{claims['sub']}"[:255],
        )

    async def aclose(self) -> None:
        await self.jwks.aclose()


def _scope_values(claim: Any) -> list[str]:
    if isinstance(claim, str):
        return claim.split()
    if isinstance(claim, list):
        return [v for v in claim if isinstance(v, str)]
    return []
