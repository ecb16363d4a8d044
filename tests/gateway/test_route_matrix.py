"""Every route of the app, times {no credential, revoked key, expired key, expired token, missing
scope, wrong tenant, valid} with the status each must get.

The routes come from ``app.routes`` (not a list kept here, not only the OpenAPI document: a
route hidden from the schema is covered too), and each route's scope from its dependency
tree. A new route that needs no scope and is not in ``PUBLIC`` fails
``test_every_route_declares_a_scope_or_is_public``; a new path parameter without a value in
``path_values`` fails loudly instead of being skipped.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cadenza_gateway import GatewaySettings, create_app
from cadenza_gateway.auth import ALL_SCOPES, AuthSettings, Scope
from cadenza_runtime import Resources
from cadenza_state import ApiKeyRecord, SecretsSettings, utcnow
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import update
from support.auth import issue_key
from test_jwt import AUDIENCE, ISSUER, IdentityProvider, idp  # noqa: F401 - the fixture

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)
pytestmark = unit_only

# Open by design: probes, the operators' metrics (own token), the API's own description.
PUBLIC = re.compile(r"^/(healthz|readyz|metrics|openapi\.json|docs.*|redoc|v1/schemas/.*)$")
OWNER, STRANGER = "owner", "stranger"
STREAM_OPEN = 200


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    scopes: frozenset[str]

    def path(self, values: dict[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in values, f"{self.template}: no test value for path parameter {name!r}"
            return values[name]

        return re.sub(r"\{(\w+)(:\w+)?\}", value, self.template)

    @property
    def streams(self) -> bool:
        return self.template.endswith("/events")


def _scopes(dependant: Dependant) -> Iterator[str]:
    yield from dependant.own_oauth_scopes or []
    for sub in dependant.dependencies:
        yield from _scopes(sub)


def operations(app: FastAPI) -> list[Operation]:
    """Every HTTP method of every route, reads first (writes below delete what they find)."""
    found = [
        Operation(method, str(route.path), frozenset(_scopes(route.dependant)))
        for route in iter_route_contexts(app.routes)  # included routers, flattened
        if isinstance(route.original_route, APIRoute)
        for method in sorted(set(route.methods or ()) - {"HEAD"})
    ]
    return sorted(found, key=lambda op: (op.method != "GET", op.method == "DELETE", op.template))


@pytest.fixture
def app(resources: Resources, idp: IdentityProvider) -> FastAPI:  # noqa: F811
    auth = AuthSettings(
        jwt_jwks_url=idp.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        secrets=SecretsSettings(master_key=base64.b64encode(os.urandom(32)).decode()),  # type: ignore[arg-type]
    )
    return create_app(resources, GatewaySettings(auth=auth, max_body_bytes=256 * 1024))


def test_every_route_declares_a_scope_or_is_public(app: FastAPI) -> None:
    ops = operations(app)
    assert len(ops) > 30
    for op in ops:
        if PUBLIC.match(op.template):
            assert not op.scopes, f"{op.method} {op.template} is public but asks a scope"
        else:
            assert len(op.scopes) == 1, f"{op.method} {op.template} declares {sorted(op.scopes)}"
            assert op.scopes <= {s.value for s in Scope}


async def _key(resources: Resources, tenant: str, scopes: Any = ALL_SCOPES) -> str:
    return await issue_key(resources, tenant, scopes)


async def _seed(api: httpx.AsyncClient, key: str, greet_yaml: str) -> dict[str, str]:
    """The owner's resources, one of each kind, named as the path parameters expect."""
    auth = {"Authorization": f"Bearer {key}"}

    async def ok(resp: httpx.Response) -> dict[str, Any]:
        assert resp.status_code < 300, (resp.request.url, resp.text)
        return dict(resp.json())

    yaml_body = {**auth, "Content-Type": "application/yaml"}
    await ok(await api.post("/v1/workflows", content=greet_yaml, headers=yaml_body))
    agent = {"name": "greet", "system_prompt": "Be brief.", "model": "local:smollm2-135m"}
    await ok(await api.post("/v1/agents", json=agent, headers=auth))
    run = await ok(await api.post("/v1/runs", json={"workflow": "greet"}, headers=auth))
    records = {"records": [{"key": "k1", "data": {"amount": 1}}]}
    await ok(await api.put("/v1/datasets/tx/records", json=records, headers=auth))
    await ok(await api.post("/v1/collections", json={"name": "handbook"}, headers=auth))
    files = {"file": ("a.txt", b"refunds take 5 days", "text/plain")}
    document = await ok(
        await api.post("/v1/collections/handbook/documents", files=files, headers=auth)
    )
    spare = await ok(
        await api.post(
            "/v1/api-keys", json={"name": "spare", "scopes": ["runs:read"]}, headers=auth
        )
    )
    return {
        "name": "greet",
        "version": "1",
        "run_id": str(run["id"]),
        "collection": "handbook",
        "document_id": str(document["id"]),
        "dataset": "tx",
        "key": "k1",
        "key_id": str(spare["id"]),
        "other_id": str(run["id"]),  # a diff of the run with itself
        "task_id": "greet",
        "period": "day",
        "approval_id": "a1",
        "letter_id": "1",
        "evaluation_id": "00000000-0000-0000-0000-000000000001",
    }


# GET routes of resources this test does not create (a held call, an evaluation, a trigger,
# a schedule, a planned task): a valid caller gets 404 there, not 200; every other answer
# (401/403 for the wrong credentials, 404 for another tenant) is checked like elsewhere.
NOT_SEEDED = {
    "/v1/approvals/{approval_id}",
    "/v1/evaluations/{evaluation_id}",
    "/v1/triggers/{name}",
    "/v1/triggers/{name}/versions",
    "/v1/schedules/{name}",
    "/v1/runs/{run_id}/tasks/{task_id}/calls",
}


async def _call(api: httpx.AsyncClient, op: Operation, path: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if op.streams:
        # An event stream stays open while its run lives, and the in-process transport only
        # answers once the body ends: a refusal comes at once, an open stream does not.
        try:
            resp = await asyncio.wait_for(api.request(op.method, path, headers=headers), 5)
        except TimeoutError:
            return STREAM_OPEN
        return resp.status_code
    return (await api.request(op.method, path, json={}, headers=headers)).status_code


async def test_every_route_answers_each_kind_of_caller_as_it_must(
    app: FastAPI,
    resources: Resources,
    idp: IdentityProvider,  # noqa: F811
    greet_yaml: str,
) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as api:
        owner = await _key(resources, OWNER)
        values = await _seed(api, owner, greet_yaml)
        stranger = await _key(resources, STRANGER)
        revoked = await _key(resources, OWNER)
        expired = await _key(resources, OWNER)
        async with resources.sessions() as session, session.begin():
            past = utcnow() - timedelta(minutes=1)
            for key, column in ((revoked, "revoked_at"), (expired, "expires_at")):
                key_id = key.split("_")[1]
                await session.execute(
                    update(ApiKeyRecord).where(ApiKeyRecord.id == key_id).values({column: past})
                )
        stale_token = idp.token(tenant=OWNER, scope=" ".join(ALL_SCOPES), lifetime_s=-600)
        lacking = {
            s.value: await _key(resources, OWNER, set(Scope) - {s, Scope.ADMIN}) for s in Scope
        }
        exact = {s.value: await _key(resources, OWNER, [s]) for s in Scope}

        checked = 0
        for op in operations(app):
            path = op.path(values)
            if not op.scopes:
                assert await _call(api, op, path, None) < 500, (op, path)
                continue
            (scope,) = op.scopes
            for caller, key in (
                ("no credential", None),
                ("revoked key", revoked),
                ("expired key", expired),
                ("expired token", stale_token),
            ):
                status = await _call(api, op, path, key)
                assert status == 401, (caller, op.method, path, status)
            status = await _call(api, op, path, lacking[scope])
            assert status == 403, ("missing scope", op.method, path, status)
            if op.method == "GET" and "{" in op.template:
                # Another tenant's resource does not exist for it (all scopes held).
                status = await _call(api, op, path, stranger)
                assert status == 404, ("wrong tenant", op.method, path, status)
            status = await _call(api, op, path, exact[scope])
            assert status not in (401, 403), ("valid", op.method, path, status)
            assert status < 500, ("valid", op.method, path, status)
            if op.method == "GET" and scope != Scope.ADMIN.value:
                expected = 404 if op.template in NOT_SEEDED else 200
                assert status == expected, ("valid", op.method, path, status)
            checked += 1
        assert checked > 30
