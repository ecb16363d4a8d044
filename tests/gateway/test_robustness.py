"""Hostile and broken requests: never a 500, never half-created state, bounded bodies."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cadenza_gateway import GatewaySettings, create_app
from cadenza_runtime import Resources
from cadenza_state import RunRecord, WorkflowRecord
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest
from sqlalchemy import func, select
from support.auth import TenantKeys, issue_key

pytestmark = pytest.mark.parametrize("stack", ["unit"], indirect=True)

LAUGHS = (
    "name: x\ntasks:\n - id: a\n   tool: transform\n   with:\n     l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"     l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
)


def malformed_bodies() -> list[tuple[str, bytes, str | None]]:
    """(case, body, content type) — a handful of ways a body can be broken."""
    rng = random.Random(7)
    valid = json.dumps({"name": "x", "tasks": [{"id": "a", "tool": "noop"}]})
    cases: list[tuple[str, bytes, str | None]] = [
        ("empty", b"", "application/json"),
        ("empty yaml", b"", "application/yaml"),
        ("random bytes", bytes(rng.randrange(256) for _ in range(512)), "application/json"),
        ("random bytes yaml", bytes(rng.randrange(256) for _ in range(512)), "application/yaml"),
        ("invalid utf-8", b'{"name": "\xff\xfe"}', "application/json"),
        ("truncated json", valid[: len(valid) // 2].encode(), "application/json"),
        ("json array", b"[1, 2, 3]", "application/json"),
        ("json string", b'"workflow"', "application/json"),
        ("json null", b"null", "application/json"),
        ("json number", b"1e999", "application/json"),
        ("deep json", b"[" * 50_000 + b"]" * 50_000, "application/json"),
        ("deep json object", b'{"a":' * 20_000 + b"1" + b"}" * 20_000, "application/json"),
        ("deep yaml", b"a: " + b"[" * 5_000 + b"]" * 5_000, "application/yaml"),
        (
            "deep with value",
            json.dumps(
                {
                    "name": "x",
                    "tasks": [
                        {
                            "id": "a",
                            "tool": "noop",
                            "with": {"v": json.loads("[" * 300 + "]" * 300)},
                        }
                    ],
                }
            ).encode(),
            "application/json",
        ),
        ("huge integer", b'{"inputs": {"n": ' + b"9" * 5000 + b"}}", "application/json"),
        ("nan everywhere", valid.replace('"noop"', "NaN").encode(), "application/json"),
        ("billion laughs", LAUGHS.encode(), "application/yaml"),
        (
            "recursive alias",
            b"name: x\ntasks:\n - id: a\n   tool: transform\n   with: &w {v: *w}\n",
            "application/yaml",
        ),
        ("yaml tags", b"name: !!binary aGk=\ntasks: !!set {a}\n", "application/yaml"),
        ("python tag", b"name: !!python/object/apply:os.system [echo hi]\n", "application/yaml"),
        ("control chars", b"name: x\x00\x01\ntasks: []", "application/yaml"),
        ("bom + garbage", b"\xef\xbb\xbf{{{", None),
        ("wrong types", json.dumps({"name": 5, "tasks": {"a": 1}}).encode(), "application/json"),
        (
            "tasks of garbage",
            json.dumps({"name": "x", "tasks": [1, None, "a", []]}).encode(),
            "application/json",
        ),
        (
            "react flow garbage",
            json.dumps({"nodes": [{"data": 5}, 7], "edges": "x"}).encode(),
            "application/json",
        ),
        ("form data", b"a=1&b=2", "application/x-www-form-urlencoded"),
    ]
    alphabet = b'{}[],:"\\ 0123456789.-eEaz\n\t'
    for i in range(12):  # random mutations of a valid document, mostly still UTF-8
        raw = bytearray(valid.encode())
        for _ in range(rng.randrange(1, 6)):
            raw[rng.randrange(len(raw))] = rng.choice(alphabet) if i % 4 else rng.randrange(256)
        cases.append((f"mutated {i}", bytes(raw), "application/json"))
    return cases


@pytest.mark.parametrize("path", ["/v1/workflows", "/v1/runs"])
async def test_malformed_bodies_never_cause_a_500(
    client: httpx.AsyncClient, resources: Resources, path: str
) -> None:
    for case, body, content_type in malformed_bodies():
        headers = {"Content-Type": content_type} if content_type else {}
        resp = await client.post(path, content=body, headers=headers)
        assert 400 <= resp.status_code < 500, (case, resp.status_code, resp.text[:300])
        assert resp.headers["content-type"] == "application/problem+json", case
        problem = resp.json()
        assert problem["status"] == resp.status_code, case
        assert problem["detail"], case
    async with resources.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WorkflowRecord)) == 0
        assert await session.scalar(select(func.count()).select_from(RunRecord)) == 0


HOSTILE_RUN_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("alias bomb in an inline spec", {"spec": LAUGHS}),
    (
        "recursive alias in an inline spec",
        {"spec": "name: x\ntasks: &t\n - {id: a, tool: noop, with: {v: *t}}\n"},
    ),
    ("deep inline spec", {"spec": "a: " + "[" * 3000 + "]" * 3000}),
    ("react flow garbage inline", {"spec": {"nodes": [{"data": []}], "edges": [{"x": 1}]}}),
    ("huge string workflow name", {"workflow": "a" * 10_000}),
    (
        "inputs deep",
        {
            "spec": {"name": "x", "inputs": {"v": {}}, "tasks": [{"id": "a", "tool": "noop"}]},
            "inputs": {"v": json.loads("[" * 500 + "]" * 500)},
        },
    ),
]


@pytest.mark.parametrize(
    ("case", "body"), HOSTILE_RUN_REQUESTS, ids=[c for c, _ in HOSTILE_RUN_REQUESTS]
)
async def test_hostile_run_requests_are_answered_without_a_500(
    client: httpx.AsyncClient, case: str, body: dict[str, Any]
) -> None:
    resp = await client.post("/v1/runs", json=body)
    assert resp.status_code < 500, (case, resp.text[:300])
    if resp.status_code >= 400:
        assert resp.headers["content-type"] == "application/problem+json"


async def test_malformed_json_and_yaml_are_400(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/runs", content=b'{"workflow": ', headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400
    assert resp.json()["type"] == "urn:cadenza:problem:malformed-body"
    resp = await client.post(
        "/v1/workflows", content=b"name: x\n  - :", headers={"Content-Type": "application/yaml"}
    )
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["code"] == "invalid_syntax"


async def test_alias_bombs_are_refused_before_expansion(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/workflows", content=LAUGHS, headers={"Content-Type": "application/yaml"}
    )
    assert resp.status_code == 400
    assert "aliases expand" in resp.json()["detail"]
    # Modest anchors and aliases (shared settings) are fine.
    ok = (
        "name: shared\ntasks:\n - {id: a, tool: noop, retry: &r {max_attempts: 5}}\n"
        " - {id: b, tool: noop, retry: *r}\n"
    )
    resp = await client.post(
        "/v1/workflows", content=ok, headers={"Content-Type": "application/yaml"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["spec"]["tasks"][1]["retry"]["max_attempts"] == 5


async def test_body_over_the_limit_is_413_by_content_length(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    big = b"#" * (settings.max_body_bytes + 1)
    for path, ctype in [("/v1/workflows", "application/yaml"), ("/v1/runs", "application/json")]:
        resp = await client.post(path, content=big, headers={"Content-Type": ctype})
        assert resp.status_code == 413
        problem = resp.json()
        assert problem["type"] == "urn:cadenza:problem:payload-too-large"
        assert problem["limit_bytes"] == settings.max_body_bytes


async def test_body_over_the_limit_is_413_while_streaming(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked encoding
        for _ in range(settings.max_body_bytes // 4096 + 2):
            yield b" " * 4096

    for path, ctype in [("/v1/workflows", "application/yaml"), ("/v1/runs", "application/json")]:
        resp = await client.post(path, content=chunks(), headers={"Content-Type": ctype})
        assert resp.status_code == 413, resp.text
        assert "more than" in resp.json()["detail"]


async def test_a_lying_content_length_does_not_get_a_big_body_through(
    app: FastAPI, settings: GatewaySettings, resources: Resources
) -> None:
    key = await issue_key(resources, "default")
    sent: list[dict[str, Any]] = []
    body = b"name: x\n" + b"#" * (settings.max_body_bytes + 10)
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/workflows",
        "raw_path": b"/v1/workflows",
        "query_string": b"",
        "root_path": "",
        "server": ("test", 80),
        "client": ("c", 1),
        "headers": [
            (b"content-type", b"application/yaml"),
            (b"content-length", b"20"),
            (b"authorization", f"Bearer {key}".encode()),
        ],
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413


async def test_payload_that_cannot_fit_in_one_event_is_413(
    resources: Resources,
) -> None:
    settings = GatewaySettings(max_body_bytes=1 << 20, max_event_bytes=10_000)
    app = create_app(resources, settings)
    transport = httpx.ASGITransport(app=app)
    auth = TenantKeys(resources)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", auth=auth) as client:
        spec = {
            "name": "big",
            "inputs": {"blob": {"type": "string"}},
            "tasks": [{"id": "a", "tool": "noop"}],
        }
        resp = await client.post("/v1/runs", json={"spec": spec, "inputs": {"blob": "x" * 20_000}})
        assert resp.status_code == 413
        assert "plan.requested" in resp.json()["detail"]


async def test_request_ids_are_generated_or_honoured(client: httpx.AsyncClient) -> None:
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    mine = await client.get("/v1/runs/missing", headers={"X-Request-Id": "req-123"})
    assert mine.headers["x-request-id"] == "req-123"
    assert mine.json()["request_id"] == "req-123"
    unsafe = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_requests_are_counted_by_route_template(client: httpx.AsyncClient, register) -> None:
    await register()
    await client.get("/v1/workflows/greet")
    await client.get("/v1/workflows/nope")
    text = generate_latest(REGISTRY).decode()  # /metrics itself is for operators only
    assert (
        'cadenza_gateway_requests_total{method="GET",route="/v1/workflows/{name}",status="200"}'
        in text
    )
    assert (
        'cadenza_gateway_requests_total{method="GET",route="/v1/workflows/{name}",status="404"}'
        in text
    )
    assert (
        'cadenza_gateway_requests_total{method="POST",route="/v1/workflows",status="201"}' in text
    )
    assert (
        'cadenza_gateway_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/workflows/{name}"}'
        in text
    )
