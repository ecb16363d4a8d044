"""`{}` bodies (issue 11): for every POST/PUT/PATCH operation of the OpenAPI document, an
empty JSON object is either accepted or refused with a status the document declares for the
operation, and it is refused for missing fields only where the request schema says so
(`required`): a schema-valid `{}` is never a 400/422, and a 422 naming missing fields comes
with a schema that `{}` does not satisfy. Parametrised over the app's own document, so a
new operation is covered as soon as it exists."""

from __future__ import annotations

import base64
import os
from typing import Any

import httpx
import pytest
from cadenza_gateway import GatewaySettings, create_app
from cadenza_gateway.auth.settings import AuthSettings, SecretsSettings
from jsonschema import Draft202012Validator
from pydantic import SecretStr
from referencing import Registry, Resource

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)

_DOCUMENT: dict[str, Any] = create_app(None, GatewaySettings()).openapi()  # type: ignore[arg-type]
_WRITES = [
    (method, path)
    for path, methods in _DOCUMENT["paths"].items()
    for method in methods
    if method in ("post", "put", "patch")
]


@pytest.fixture
def settings(settings: GatewaySettings) -> GatewaySettings:
    """The conftest's, with provider keys enabled (else PUT /v1/provider-keys is a 503)."""
    master = SecretStr(base64.b64encode(os.urandom(32)).decode())
    auth = AuthSettings(secrets=SecretsSettings(master_key=master))
    return settings.model_copy(update={"auth": auth})


def _path_value(parameter: dict[str, Any]) -> str:
    schema = parameter.get("schema", {})
    if "enum" in schema:
        return str(schema["enum"][0])
    return "1" if schema.get("type") == "integer" else "x1"


def _url(path: str, operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace(f"{{{parameter['name']}}}", _path_value(parameter))
    return path


def _json_media_types(operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {})
    return [media for media in content if media.endswith("json")]


async def _validator(
    client: httpx.AsyncClient, path: str, method: str, media_type: str
) -> Draft202012Validator:
    """The operation's request body schema, `#/components/...` and `/v1/schemas/*.json`
    references resolved (the latter from the gateway itself)."""
    registry: Registry = Registry()
    for schema_path in ("/v1/schemas/workflow.json", "/v1/schemas/agent.json"):
        published = (await client.get(schema_path)).json()
        published.pop("$id", None)
        registry = registry.with_resource(schema_path, Resource.from_contents(published))
    escaped = path.replace("~", "~0").replace("/", "~1")
    media = media_type.replace("~", "~0").replace("/", "~1")
    pointer = f"#/paths/{escaped}/{method}/requestBody/content/{media}/schema"
    root = {**_DOCUMENT, "$schema": "https://json-schema.org/draft/2020-12/schema"}
    return Draft202012Validator({**root, "$ref": pointer}, registry=registry)


@unit_only
@pytest.mark.parametrize(("method", "path"), _WRITES, ids=[f"{m.upper()} {p}" for m, p in _WRITES])
async def test_an_empty_object_is_accepted_or_refused_as_the_document_says(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    operation = _DOCUMENT["paths"][path][method]
    declared = set(operation["responses"])
    # Each JSON media type the operation takes; an operation without one (no body, or a
    # multipart upload) gets `{}` as application/json all the same.
    for media_type in _json_media_types(operation) or ["application/json"]:
        resp = await client.request(
            method.upper(),
            _url(path, operation),
            content=b"{}",
            headers={"content-type": media_type},
        )
        where = f"{method.upper()} {path} ({media_type})"
        assert str(resp.status_code) in declared, (where, resp.status_code, resp.text)
        assert resp.status_code < 500, (where, resp.text)
        if resp.status_code >= 400:
            assert resp.headers["content-type"] == "application/problem+json", (where, resp.text)
        if media_type not in _json_media_types(operation):
            continue
        schema_valid = (await _validator(client, path, method, media_type)).is_valid({})
        if schema_valid:
            # Accepted, or refused for what the body cannot change (a missing resource…).
            assert resp.status_code not in (400, 422), (where, "{} is schema-valid", resp.text)
        elif resp.status_code < 300:
            pytest.fail(f"{where}: the schema refuses {{}} but the server accepted it")
