"""JWT bearer tokens: signed in the test with keys served by an in-test JWKS endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
import uvicorn
from cadenza_gateway import GatewaySettings, create_app
from cadenza_gateway.auth import AuthSettings
from cadenza_runtime import Resources
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from support import assert_eventually
from support.auth import issue_key
from support.cluster import free_port

# Auth does not depend on the stack: the unit one is enough.
unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)
ISSUER = "https://idp.test/"
AUDIENCE = "cadenza-api"


@dataclass
class IdentityProvider:
    """Signs tokens; serves the public halves of its current keys as a JWKS over HTTP."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    fetches: int = 0
    down: bool = False

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            out.append({**public, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": out}

    def token(self, kid: str | None = None, lifetime_s: float = 300, **claims: Any) -> str:
        kid = kid or next(iter(self.keys))
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "tenant": "acme",
            "scope": "openid runs:read workflows:read",
            "iat": now,
            "exp": now + int(lifetime_s),
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest_asyncio.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add_key("k1")

    async def jwks(_request: Request) -> JSONResponse:
        provider.fetches += 1
        if provider.down:
            return JSONResponse({"error": "down"}, status_code=503)
        return JSONResponse(provider.jwks())

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/jwks", jwks)]), host="127.0.0.1", port=port, log_level="error"
        )
    )
    task = asyncio.create_task(server.serve())
    await assert_eventually(lambda: server.started, timeout=10)
    provider.url = f"http://127.0.0.1:{port}/jwks"
    yield provider
    server.should_exit = True
    await task


@pytest.fixture
def make_client(resources: Resources, idp: IdentityProvider) -> Callable[..., httpx.AsyncClient]:
    def make(**auth: Any) -> httpx.AsyncClient:
        settings = GatewaySettings(
            auth=AuthSettings(
                **{
                    "jwt_jwks_url": idp.url,
                    "jwt_issuer": ISSUER,
                    "jwt_audience": AUDIENCE,
                    "jwks_min_refresh_s": 0,
                    **auth,
                }
            )
        )
        transport = httpx.ASGITransport(app=create_app(resources, settings))
        return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")

    return make


@pytest_asyncio.fixture
async def api(make_client: Callable[..., httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@unit_only
async def test_a_valid_token_gives_its_tenant_and_scopes(
    api: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    token = idp.token(scope="openid workflows:read workflows:write")
    created = await api.post(
        "/v1/workflows",
        content="name: greet\ntasks: [{id: a, tool: noop}]\n",
        headers={**bearer(token), "Content-Type": "application/yaml"},
    )
    assert created.status_code == 201, created.text
    # acme's workflow: visible to an acme token only.
    assert (await api.get("/v1/workflows/greet", headers=bearer(token))).status_code == 200
    other = idp.token(tenant="other", scope="workflows:read")
    assert (await api.get("/v1/workflows/greet", headers=bearer(other))).status_code == 404
    refused = await api.get("/v1/runs", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json()["required_scopes"] == ["runs:read"]


@pytest.mark.parametrize(
    ("claims", "detail"),
    [
        ({"lifetime_s": -120}, "expired"),
        ({"iss": "https://evil.test/"}, "issuer"),
        ({"aud": "someone-else"}, "audience"),
        ({"tenant": None}, "tenant"),
        ({"tenant": "no spaces allowed"}, "tenant"),
        ({"sub": None}, "sub"),
    ],
)
@unit_only
async def test_tokens_failing_a_check_are_401(
    api: httpx.AsyncClient, idp: IdentityProvider, claims: dict[str, Any], detail: str
) -> None:
    resp = await api.get("/v1/workflows", headers=bearer(idp.token(**claims)))
    assert resp.status_code == 401, resp.text
    assert resp.json()["type"] == "urn:cadenza:problem:unauthenticated"
    assert detail in resp.json()["detail"].lower()


@unit_only
async def test_a_token_signed_by_another_key_or_algorithm_is_401(
    api: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    forger = IdentityProvider()
    forger.add_key("k1")  # same kid, different key
    forged = await api.get("/v1/workflows", headers=bearer(forger.token()))
    assert forged.status_code == 401
    assert "signature" in forged.json()["detail"].lower()
    # HS256 keyed with the public key: the classic algorithm confusion.
    public_pem = idp.jwks()["keys"][0]["n"]
    confused = jwt.encode({"sub": "x", "tenant": "acme"}, public_pem, algorithm="HS256")
    resp = await api.get("/v1/workflows", headers=bearer(confused))
    assert resp.status_code == 401
    assert "HS256" in resp.json()["detail"]


@unit_only
async def test_rotated_keys_are_fetched_once_and_cached(
    api: httpx.AsyncClient, idp: IdentityProvider
) -> None:
    assert (await api.get("/v1/workflows", headers=bearer(idp.token()))).status_code == 200
    assert (await api.get("/v1/workflows", headers=bearer(idp.token()))).status_code == 200
    assert idp.fetches == 1
    idp.add_key("k2")  # the provider rotates: new tokens carry kid k2
    rotated = await api.get("/v1/workflows", headers=bearer(idp.token("k2")))
    assert rotated.status_code == 200
    assert idp.fetches == 2
    idp.add_key("k9")
    token = idp.token("k9")
    del idp.keys["k9"]  # a kid the provider does not publish: refetched, still unknown
    resp = await api.get("/v1/workflows", headers=bearer(token))
    assert resp.status_code == 401
    assert "unknown key" in resp.json()["detail"]
    assert idp.fetches == 3


@unit_only
async def test_an_unreachable_provider_is_503_with_retry_after(
    make_client: Callable[..., httpx.AsyncClient], idp: IdentityProvider
) -> None:
    idp.down = True
    async with make_client(jwks_min_refresh_s=7) as api:
        resp = await api.get("/v1/workflows", headers=bearer(idp.token()))
    assert resp.status_code == 503
    assert resp.json()["type"] == "urn:cadenza:problem:identity-provider-unavailable"
    assert resp.headers["retry-after"] == "7"


@unit_only
async def test_api_keys_still_work_beside_tokens(
    api: httpx.AsyncClient, resources: Resources
) -> None:
    key = await issue_key(resources, "acme", ["runs:read"])
    assert (await api.get("/v1/runs", headers=bearer(key))).status_code == 200


def test_symmetric_algorithms_are_refused_in_settings() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        AuthSettings(jwt_algorithms=["HS256"])
