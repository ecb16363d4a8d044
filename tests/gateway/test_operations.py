"""Health, readiness, metrics, the published JSON Schema, OpenAPI, and the Gateway service
object (a real uvicorn server)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cadenza_events import BusSettings, MemoryBroker
from cadenza_gateway import Gateway, GatewaySettings, create_app
from cadenza_gateway.auth import AuthSettings
from cadenza_runtime import Resources, open_resources
from cadenza_state import StateSettings
from pydantic import SecretStr

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def test_healthz_and_readyz_when_everything_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "redis", "bus"}
    assert all(v.startswith("ok") for v in body["checks"].values())


async def test_readyz_is_503_naming_the_failed_check_when_redis_is_unreachable(
    tmp_path: Path, unique_id: str, settings: GatewaySettings
) -> None:
    state = StateSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        redis_backend="redis",
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
        object_store="local",
        object_store_dir=tmp_path / "objects",
    )
    resources = await open_resources(
        BusSettings(backend="memory", topic_prefix=f"{unique_id}."), state, broker=MemoryBroker()
    )
    try:
        app = create_app(resources, settings)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/healthz")).status_code == 200  # alive, not ready
            resp = await client.get("/readyz")
        assert resp.status_code == 503
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["type"] == "urn:cadenza:problem:not-ready"
        assert "redis" in problem["detail"]
        assert problem["checks"]["redis"].startswith("failed")
        assert problem["checks"]["database"] == "ok"
    finally:
        await resources.close()


@unit_only
async def test_workflow_schema_is_served_with_its_public_id(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    resp = await client.get("/v1/schemas/workflow.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/schema+json"
    schema = resp.json()
    assert schema["$id"] == "http://gateway.test/v1/schemas/workflow.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "tasks" in schema["properties"]

    public = create_app(resources, GatewaySettings(public_url="https://cadenza.example.com/"))
    transport = httpx.ASGITransport(app=public)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal") as c:
        schema = (await c.get("/v1/schemas/workflow.json")).json()
    assert schema["$id"] == "https://cadenza.example.com/v1/schemas/workflow.json"


@unit_only
async def test_openapi_documents_routes_and_problem_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in [
        "/v1/workflows",
        "/v1/workflows/{name}",
        "/v1/workflows/{name}/versions/{version}",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/status",
        "/v1/runs/{run_id}/cancel",
        "/v1/schemas/workflow.json",
        "/healthz",
        "/readyz",
        "/metrics",
    ]:
        assert path in paths, path
    create = paths["/v1/runs"]["post"]
    for status in ["400", "404", "413", "415", "422"]:
        content = create["responses"][status]["content"]
        assert list(content) == ["application/problem+json"], status
        assert content["application/problem+json"]["schema"]["$ref"].endswith("/Problem")
    assert "application/yaml" in paths["/v1/workflows"]["post"]["requestBody"]["content"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


@unit_only
async def test_metrics_endpoint_exposes_gateway_metrics(
    resources: Resources, client: httpx.AsyncClient
) -> None:
    settings = GatewaySettings(auth=AuthSettings(metrics_token=SecretStr("scrape-me")))
    transport = httpx.ASGITransport(app=create_app(resources, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as ops:
        await ops.get("/healthz")
        resp = await ops.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        # Tenants' credentials do not read the operators' metrics (labels name tenants).
        tenant_key = (await client.get("/metrics")).request.headers["authorization"]
        for refused in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": tenant_key}):
            denied = await ops.get("/metrics", headers=refused)
            assert denied.status_code == 401
            assert denied.json()["type"] == "urn:cadenza:problem:unauthenticated"
            assert "cadenza_gateway" not in denied.text
    # No token configured: only a dev-mode gateway serves them.
    assert (await client.get("/metrics")).status_code == 401
    dev = GatewaySettings(auth=AuthSettings(anonymous_access=True))
    transport = httpx.ASGITransport(app=create_app(resources, dev))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as local:
        assert (await local.get("/metrics")).status_code == 200
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert 'cadenza_gateway_requests_total{method="GET",route="/healthz",status="200"}' in resp.text
    assert "cadenza_gateway_request_duration_seconds_bucket" in resp.text
    assert "cadenza_outbox_relayed_total" in resp.text  # shared process metrics too


@unit_only
async def test_made_up_methods_share_one_metric_label(client: httpx.AsyncClient) -> None:
    from prometheus_client import REGISTRY

    def count(method: str) -> float:
        labels = {"method": method, "route": "/v1/runs", "status": "405"}
        return REGISTRY.get_sample_value("cadenza_gateway_requests_total", labels) or 0.0

    before = count("_OTHER")
    for verb in ("BREW", "FOO123", "PROPFIND"):
        resp = await client.request(verb, "/v1/runs")
        assert resp.status_code == 405, verb
    assert count("_OTHER") - before == 3
    for verb in ("BREW", "FOO123", "PROPFIND"):
        assert count(verb) == 0.0  # no label value per client-chosen verb


@unit_only
async def test_gateway_service_serves_http_until_stopped(
    resources: Resources, settings: GatewaySettings
) -> None:
    gateway = Gateway(resources, settings)  # port 0: any free port
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as c:
            assert (await c.get("/healthz")).json() == {"status": "ok"}
            assert (await c.get("/readyz")).status_code == 200
    finally:
        await gateway.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as c:
            await c.get("/healthz")


@unit_only
async def test_gateway_start_fails_loudly_when_the_port_is_taken(
    resources: Resources, settings: GatewaySettings
) -> None:
    first = Gateway(resources, settings)
    await first.start()
    try:
        taken = settings.model_copy(update={"port": first.port})
        with pytest.raises(RuntimeError, match="could not start"):
            await Gateway(resources, taken).start()
    finally:
        await first.stop()


async def test_bus_check_pings_the_bus_and_reports_failures() -> None:
    from types import SimpleNamespace

    from cadenza_gateway.readiness import check_bus

    calls = []

    async def ping() -> None:
        calls.append("ping")

    async def unreachable() -> None:
        raise ConnectionError("no broker")

    assert await check_bus(SimpleNamespace(ping=ping)) == "ok"  # type: ignore[arg-type]
    assert calls == ["ping"]
    with pytest.raises(ConnectionError):
        await check_bus(SimpleNamespace(ping=unreachable))  # type: ignore[arg-type]


async def test_python_dash_m_serves_until_sigterm(tmp_path: Path) -> None:
    import asyncio
    import os
    import signal
    import socket
    import sys

    from support import assert_eventually

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "CADENZA_BUS_BACKEND": "memory",
        "CADENZA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "CADENZA_REDIS_BACKEND": "memory",
        "CADENZA_OBJECT_STORE": "local",
        "CADENZA_OBJECT_STORE_DIR": str(tmp_path / "objects"),
        "CADENZA_GATEWAY_PORT": str(port),
    }
    log = tmp_path / "gateway.log"
    with log.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cadenza_gateway", env=env, stdout=out, stderr=out
        )

    async def ready() -> bool:
        assert proc.returncode is None, log.read_text()
        try:
            async with httpx.AsyncClient() as c:
                resp = await c.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
        except httpx.TransportError:
            return False
        return resp.status_code == 200

    try:
        await assert_eventually(
            ready, timeout=60, interval=0.05, message="python -m cadenza_gateway never became ready"
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
