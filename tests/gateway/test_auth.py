"""Authentication and authorisation: the credential is the tenant, every route's scope."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cadenza_gateway import GatewaySettings, create_app
from cadenza_gateway.auth import AuthSettings, Scope, keys
from cadenza_runtime import Resources
from cadenza_state import ApiKeyRecord, AuditLogEntry, utcnow
from fastapi import FastAPI
from sqlalchemy import select, update
from support.auth import issue_key

PROBLEM = "application/problem+json"
# A valid value for every path parameter of the API (the route need not find anything).
PATH_VALUES = {
    "name": "greet",
    "version": "1",
    "run_id": "r1",
    "other_id": "r2",
    "task_id": "t1",
    "period": "day",
    "collection": "handbook",
    "document_id": "d1",
    "dataset": "tx",
    "key": "k1",
    "key_id": "0123456789ab",
    "evaluation_id": "00000000-0000-0000-0000-000000000001",
    "approval_id": "a1",
    "letter_id": "1",
}


def secured_operations(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, concrete path, required scope) of every operation needing a credential."""
    out = []
    for template, operations in app.openapi()["paths"].items():
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES[m.group(1)], template)
        for method, operation in operations.items():
            for requirement in operation.get("security", []):
                if "bearer" in requirement:
                    (scope,) = requirement["bearer"]
                    out.append((method.upper(), path, scope))
    return out


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(client: httpx.AsyncClient, method: str, path: str, key: str | None) -> Any:
    headers = bearer(key) if key else {}
    return await client.request(method, path, json={}, headers=headers)


def assert_auth_problem(resp: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    assert resp.headers["content-type"] == PROBLEM
    body: dict[str, Any] = resp.json()
    assert body["type"] == f"urn:cadenza:problem:{slug}"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    return body


def test_every_v1_operation_declares_one_scope_in_openapi(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operations = secured_operations(app)
    secured = {(m, p) for m, p, _ in operations}
    for template, ops in schema["paths"].items():
        for method in ops:
            concrete = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_VALUES[m.group(1)], template)
            public = not template.startswith("/v1/") or template.startswith("/v1/schemas")
            assert ((method.upper(), concrete) in secured) is not public, (method, template)
    assert {scope for _, _, scope in operations} <= {s.value for s in Scope}
    scopes = {(m, p): s for m, p, s in operations}
    assert scopes["POST", "/v1/runs"] == "runs:write"
    assert scopes["POST", "/v1/runs/r1/rerun"] == scopes["POST", "/v1/runs/r1/fork"] == "runs:write"
    assert scopes["GET", "/v1/runs/r1/calls"] == scopes["GET", "/v1/runs/r1/diff/r2"] == "runs:read"
    assert scopes["GET", "/v1/runs/r1/events"] == "runs:read"
    assert scopes["POST", "/v1/collections/handbook/search"] == "documents:read"
    assert scopes["POST", "/v1/api-keys"] == "admin"


async def test_every_operation_refuses_a_request_without_credential(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    operations = secured_operations(app)
    assert len(operations) > 30
    for method, path, _ in operations:
        body = assert_auth_problem(
            await send(anonymous, method, path, None), 401, "unauthenticated"
        )
        assert body["instance"] == path


async def test_every_operation_names_the_scope_a_key_lacks(
    app: FastAPI, anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    # Holds every scope but admin; each operation gets a key without exactly its scope.
    keys = {
        scope.value: await issue_key(resources, "default", set(Scope) - {scope, Scope.ADMIN})
        for scope in Scope
    }
    for method, path, scope in secured_operations(app):
        resp = await send(anonymous, method, path, keys[scope])
        body = assert_auth_problem(resp, 403, "insufficient-scope")
        assert body["required_scopes"] == [scope]
        assert scope in body["detail"]
        assert f'scope="{scope}"' in resp.headers["www-authenticate"]


async def test_a_key_with_the_scope_passes_and_admin_implies_every_scope(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    reader = await issue_key(resources, "default", [Scope.RUNS_READ])
    admin = await issue_key(resources, "default", [Scope.ADMIN])
    assert (await anonymous.get("/v1/runs", headers=bearer(reader))).status_code == 200
    assert (await anonymous.get("/v1/workflows", headers=bearer(admin))).status_code == 200
    refused = await anonymous.get("/v1/workflows", headers=bearer(reader))
    assert assert_auth_problem(refused, 403, "insufficient-scope")["required_scopes"] == [
        "workflows:read"
    ]


@pytest.mark.parametrize(
    "token",
    [
        "cdz_0123456789ab_nottherightsecret",  # unknown id
        "cdz_short_secret",  # malformed
        "not-a-key-and-jwt-is-off",
    ],
)
async def test_unknown_or_malformed_credentials_are_401(
    anonymous: httpx.AsyncClient, token: str
) -> None:
    resp = await anonymous.get("/v1/runs", headers=bearer(token))
    assert_auth_problem(resp, 401, "unauthenticated")
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


async def test_a_right_id_with_a_wrong_secret_is_401(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    key = await issue_key(resources, "default")
    forged = key[: key.rindex("_") + 1] + "x" * 43
    assert_auth_problem(
        await anonymous.get("/v1/runs", headers=bearer(forged)), 401, "unauthenticated"
    )
    assert (await anonymous.get("/v1/runs", headers=bearer(key))).status_code == 200


async def test_an_expired_key_is_401(anonymous: httpx.AsyncClient, resources: Resources) -> None:
    key = await issue_key(resources, "default", expires_in_s=3600)
    assert (await anonymous.get("/v1/runs", headers=bearer(key))).status_code == 200
    key_id = key.split("_")[1]
    async with resources.sessions() as session, session.begin():
        await session.execute(
            update(ApiKeyRecord)
            .where(ApiKeyRecord.id == key_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    body = assert_auth_problem(
        await anonymous.get("/v1/runs", headers=bearer(key)), 401, "unauthenticated"
    )
    assert "expired" in body["detail"]


async def test_a_request_reads_its_key_as_the_orm_does(resources: Resources) -> None:
    """Each request reads its key with one direct statement on PostgreSQL
    (``keys.get_credential``): the same values as the ORM's row, times in UTC, and a
    revocation seen at once."""
    key = await issue_key(resources, "default", expires_in_s=3600)
    key_id = key.split("_")[1]
    async with resources.reads() as session:
        credential = await keys.get_credential(session, key_id)
        record = await keys.get_key(session=session, key_id=key_id)
        assert await keys.get_credential(session, "nosuchkey") is None
    assert credential is not None
    assert record is not None
    assert (credential.id, credential.tenant_id, credential.scopes) == (
        record.id,
        record.tenant_id,
        record.scopes,
    )
    assert credential.secret_hash == record.secret_hash
    assert credential.expires_at == record.expires_at
    assert credential.expires_at is not None
    assert credential.expires_at.utcoffset() == timedelta(0)
    assert credential.revoked_at is None
    assert keys.is_active(credential)
    async with resources.sessions() as session, session.begin():
        await session.execute(
            update(ApiKeyRecord).where(ApiKeyRecord.id == key_id).values(revoked_at=utcnow())
        )
    async with resources.reads() as session:
        revoked = await keys.get_credential(session, key_id)
    assert revoked is not None
    assert revoked.revoked_at is not None
    assert not keys.is_active(revoked)


async def test_the_tenant_comes_from_the_key_never_from_a_header(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, resources: Resources, register: Any
) -> None:
    await register(**{"X-Tenant-Id": "acme"})  # acme's workflow, through acme's key
    default_key = await issue_key(resources, "default")
    spoofed = await anonymous.get(
        "/v1/workflows/greet", headers={**bearer(default_key), "X-Tenant-Id": "acme"}
    )
    assert spoofed.status_code == 404
    no_key = await anonymous.get("/v1/workflows/greet", headers={"X-Tenant-Id": "acme"})
    assert_auth_problem(no_key, 401, "unauthenticated")
    acme_key = await issue_key(resources, "acme", [Scope.WORKFLOWS_READ])
    mine = await anonymous.get("/v1/workflows/greet", headers=bearer(acme_key))
    assert mine.status_code == 200
    assert mine.json()["name"] == "greet"


async def test_api_key_lifecycle_create_list_rotate_revoke(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    admin = await issue_key(resources, "acme", [Scope.ADMIN])
    created = await anonymous.post(
        "/v1/api-keys",
        json={"name": "ci", "scopes": ["runs:read", "runs:write"]},
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["key"].startswith(new["prefix"] + "_")
    assert new["prefix"] == f"cdz_{new['id']}"
    assert new["scopes"] == ["runs:read", "runs:write"]
    assert new["created_by"] == f"key:{admin.split('_')[1]}"
    key = new["key"]
    assert (await anonymous.get("/v1/runs", headers=bearer(key))).status_code == 200
    no_admin = await anonymous.get("/v1/api-keys", headers=bearer(key))
    assert assert_auth_problem(no_admin, 403, "insufficient-scope")["required_scopes"] == ["admin"]

    listed = (await anonymous.get("/v1/api-keys", headers=bearer(admin))).json()["items"]
    by_id = {item["id"]: item for item in listed}
    assert by_id[new["id"]]["active"] is True
    text = str(listed)
    assert "key" not in by_id[new["id"]]
    secret = key.split("_", 2)[2]
    assert secret not in text
    assert "hmac" not in text
    async with resources.sessions() as session:
        stored = await session.get(ApiKeyRecord, new["id"])
    assert stored is not None
    assert secret not in stored.secret_hash
    assert stored.secret_hash.startswith("hmac-sha256:")

    rotated = await anonymous.post(f"/v1/api-keys/{new['id']}/rotate", headers=bearer(admin))
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["rotated_from"] == new["id"]
    assert rotated.json()["scopes"] == new["scopes"]
    old = await anonymous.get("/v1/runs", headers=bearer(key))
    assert "revoked" in assert_auth_problem(old, 401, "unauthenticated")["detail"]
    fresh = rotated.json()["key"]
    assert (await anonymous.get("/v1/runs", headers=bearer(fresh))).status_code == 200

    revoked = await anonymous.delete(f"/v1/api-keys/{rotated.json()['id']}", headers=bearer(admin))
    assert revoked.status_code == 204
    assert_auth_problem(
        await anonymous.get("/v1/runs", headers=bearer(fresh)), 401, "unauthenticated"
    )
    again = await anonymous.delete(f"/v1/api-keys/{rotated.json()['id']}", headers=bearer(admin))
    assert again.status_code == 204
    listed = (await anonymous.get("/v1/api-keys", headers=bearer(admin))).json()["items"]
    assert {i["id"]: i["active"] for i in listed}[rotated.json()["id"]] is False

    async with resources.sessions() as session:
        audit = (
            await session.execute(
                select(AuditLogEntry.action, AuditLogEntry.actor)
                .where(AuditLogEntry.tenant_id == "acme")
                .order_by(AuditLogEntry.id)
            )
        ).all()
    actor = f"key:{admin.split('_')[1]}"
    assert [tuple(row) for row in audit] == [
        ("api_key.created", actor),
        ("api_key.rotated", actor),
        ("api_key.revoked", actor),
    ]


async def test_keys_of_another_tenant_are_invisible(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    acme = await issue_key(resources, "acme", [Scope.ADMIN])
    other = await issue_key(resources, "other", [Scope.ADMIN])
    other_id = other.split("_")[1]
    listed = (await anonymous.get("/v1/api-keys", headers=bearer(acme))).json()["items"]
    assert other_id not in {i["id"] for i in listed}
    for resp in (
        await anonymous.delete(f"/v1/api-keys/{other_id}", headers=bearer(acme)),
        await anonymous.post(f"/v1/api-keys/{other_id}/rotate", headers=bearer(acme)),
    ):
        assert resp.status_code == 404
        assert resp.json()["type"] == "urn:cadenza:problem:api-key-not-found"
    assert (await anonymous.get("/v1/api-keys", headers=bearer(other))).status_code == 200


async def test_a_key_cannot_grant_scopes_its_creator_lacks(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    admin = await issue_key(resources, "acme", [Scope.ADMIN])
    bad = await anonymous.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["runs:fly"]}, headers=bearer(admin)
    )
    assert bad.status_code == 422
    empty = await anonymous.post(
        "/v1/api-keys", json={"name": "x", "scopes": []}, headers=bearer(admin)
    )
    assert empty.status_code == 422


async def test_dev_mode_serves_anonymous_callers_as_the_default_tenant(
    resources: Resources, register: Any
) -> None:
    await register()  # tenant default, through its key
    await register(**{"X-Tenant-Id": "acme"})
    settings = GatewaySettings(default_tenant="default", auth=AuthSettings(anonymous_access=True))
    app = create_app(resources, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as dev:
        listed = await dev.get("/v1/workflows", headers={"X-Tenant-Id": "acme"})
        assert listed.status_code == 200
        assert [w["name"] for w in listed.json()["items"]] == ["greet"]
        created = await dev.post("/v1/api-keys", json={"name": "dev", "scopes": ["admin"]})
        assert created.status_code == 201
        assert created.json()["created_by"] == "anonymous"
        # A credential that is sent is still checked, even in dev mode.
        bad = await dev.get("/v1/workflows", headers=bearer("cdz_0123456789ab_nope"))
        assert bad.status_code == 401


def test_dev_mode_is_refused_on_a_network_address() -> None:
    with pytest.raises(ValueError, match="anonymous access"):
        GatewaySettings(host="0.0.0.0", auth=AuthSettings(anonymous_access=True))
    assert GatewaySettings(host="::1", auth=AuthSettings(anonymous_access=True)).auth


async def test_the_audit_log_pages_newest_first_and_filters_by_action(
    anonymous: httpx.AsyncClient, resources: Resources
) -> None:
    admin = bearer(await issue_key(resources, "acme", [Scope.ADMIN]))
    ids = []
    for name in ("a", "b", "c"):
        resp = await anonymous.post(
            "/v1/api-keys", json={"name": name, "scopes": ["runs:read"]}, headers=admin
        )
        ids.append(resp.json()["id"])
    await anonymous.delete(f"/v1/api-keys/{ids[0]}", headers=admin)
    first = (await anonymous.get("/v1/audit", params={"limit": 3}, headers=admin)).json()
    assert [e["action"] for e in first["items"]] == [
        "api_key.revoked",
        "api_key.created",
        "api_key.created",
    ]
    assert first["items"][0]["subject"] == f"api_key:{ids[0]}"
    rest = await anonymous.get(
        "/v1/audit", params={"limit": 3, "cursor": first["next_cursor"]}, headers=admin
    )
    assert [e["subject"] for e in rest.json()["items"]] == [f"api_key:{ids[0]}"]
    assert rest.json()["next_cursor"] is None
    revoked = await anonymous.get("/v1/audit", params={"action": "api_key.revoked"}, headers=admin)
    assert len(revoked.json()["items"]) == 1
    bad = await anonymous.get("/v1/audit", params={"cursor": "x"}, headers=admin)
    assert bad.status_code == 400
