"""rag-ingest's search API and the RemoteSearcher that gateways and workers use when the
store is Qdrant's local mode in another process: same hits as searching in process, and
each failure mapped to the error its caller expects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cadenza_events import NonRetryableError, RetryableError
from cadenza_gateway import GatewaySettings, create_app
from cadenza_rag import RagIngest, create_search_app
from cadenza_retrieval import (
    RemoteSearcher,
    Retriever,
    SearchUnavailable,
    UnknownCollection,
    visible_generations,
)
from cadenza_runtime import HttpServer, Resources
from cadenza_worker.tools import RagSearchTool, ToolContext
from support.auth import TenantKeys
from support.cluster import free_port

Upload = Callable[..., Awaitable[httpx.Response]]
Wait = Callable[..., Awaitable[dict[str, Any]]]
TENANT = {"X-Tenant-Id": "acme"}
TENANT_ID = GatewaySettings().default_tenant
REFUNDS = b"# Refunds\n\nGift cards and opened software cannot be refunded after purchase."
SHIPPING = b"# Shipping\n\nParcels leave the Rotterdam warehouse every weekday before noon."


@pytest_asyncio.fixture
async def search_url(resources: Resources, retriever: Retriever) -> AsyncIterator[str]:
    """The search API over real HTTP on a free port, on the ingest's own store."""
    server = HttpServer(create_search_app(retriever, resources.sessions), "127.0.0.1", 0)
    await server.start()
    yield f"http://127.0.0.1:{server.port}"
    await server.stop()


@pytest_asyncio.fixture
async def remote(search_url: str) -> AsyncIterator[RemoteSearcher]:
    searcher = RemoteSearcher(search_url)
    yield searcher
    await searcher.aclose()


async def _indexed_handbook(client: httpx.AsyncClient, upload: Upload, wait: Wait) -> str:
    """refunds.md and shipping.md, indexed, in the gateway's default tenant."""
    resp = await client.post("/v1/collections", json={"name": "handbook"})
    assert resp.status_code == 201, resp.text
    sent = [
        await upload("handbook", name, body, "text/markdown")
        for name, body in (("refunds.md", REFUNDS), ("shipping.md", SHIPPING))
    ]
    for resp in sent:
        assert resp.status_code == 202, resp.text
        await wait("handbook", resp.json()["id"], "indexed")
    return str(sent[0].json()["id"])


async def test_remote_search_returns_what_the_store_returns(
    client: httpx.AsyncClient,
    upload: Upload,
    wait_status: Wait,
    resources: Resources,
    retriever: Retriever,
    remote: RemoteSearcher,
) -> None:
    refunds_id = await _indexed_handbook(client, upload, wait_status)
    query = "can I get my money back for a gift card?"
    remote_hits = await remote.search(TENANT_ID, "handbook", query, k=2)
    local_hits = await retriever.search(
        TENANT_ID,
        "handbook",
        query,
        k=2,
        generations=visible_generations(resources.sessions, TENANT_ID),
    )
    assert remote_hits == local_hits
    assert remote_hits[0].citation.document_id == refunds_id
    assert remote_hits[0].citation.title == "refunds.md"
    filtered = await remote.search(TENANT_ID, "handbook", "warehouse", filters={"document_id": "x"})
    assert filtered == []
    with pytest.raises(UnknownCollection, match="handbook"):
        await remote.search("other-tenant", "handbook", query)


async def test_the_search_api_names_bad_fields(search_url: str, remote: RemoteSearcher) -> None:
    async with httpx.AsyncClient(base_url=search_url) as raw:
        bad_k = await raw.post(
            "/v1/search", json={"collection": "c", "query": "q", "k": 0}, headers=TENANT
        )
        assert bad_k.status_code == 422
        assert bad_k.json()["detail"].startswith("k:")
        no_tenant = await raw.post("/v1/search", json={"collection": "c", "query": "q"})
        assert no_tenant.status_code == 422
        assert "X-Tenant-Id" in no_tenant.json()["detail"]
    with pytest.raises(ValueError, match="k: must be between"):
        await remote.search("acme", "c", "q", k=0)  # refused before any request


@pytest.mark.parametrize("stack", ["unit"], indirect=True)
async def test_an_unreachable_search_service_is_a_clear_retryable_failure(
    resources: Resources, ingest: RagIngest, tool_context: Callable[..., ToolContext]
) -> None:
    dead = RemoteSearcher(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(SearchUnavailable, match=r"unreachable.*CADENZA_RAG_SEARCH_PORT"):
            await dead.search("acme", "handbook", "refunds")

        app = create_app(resources, GatewaySettings(), searcher=dead)
        transport = httpx.ASGITransport(app=app)
        auth = TenantKeys(resources)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gw", auth=auth
        ) as gateway:
            await gateway.post("/v1/collections", json={"name": "handbook"}, headers=TENANT)
            resp = await gateway.post(
                "/v1/collections/handbook/search", json={"query": "refunds"}, headers=TENANT
            )
        assert resp.status_code == 503
        assert resp.json()["type"].endswith("search-unavailable")
        assert "unreachable" in resp.json()["detail"]

        tool = RagSearchTool(searcher=dead)
        ctx = tool_context()
        with pytest.raises(RetryableError, match="unreachable"):
            await tool({"collection": "handbook", "query": "refunds"}, ctx)
        with pytest.raises(NonRetryableError, match="no collection named 'nope'"):
            await tool({"collection": "nope", "query": "refunds"}, ctx)
    finally:
        await dead.aclose()


async def test_with_a_service_token_only_callers_holding_it_reach_the_search_api(
    resources: Resources, retriever: Retriever
) -> None:
    app = create_search_app(retriever, resources.sessions, token="svc-token-123")
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    body = {"collection": "handbook", "query": "refunds"}
    try:
        async with httpx.AsyncClient(base_url=url) as raw:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": "svc-token-123"},
            ):
                refused = await raw.post("/v1/search", json=body, headers={**TENANT, **headers})
                assert refused.status_code == 401, headers
                assert refused.headers["www-authenticate"].startswith("Bearer")
                assert "handbook" not in refused.text
            assert (await raw.get("/healthz")).status_code == 200  # probes need no token
        wrong = RemoteSearcher(url, token="not-it")
        with pytest.raises(SearchUnavailable, match="CADENZA_RETRIEVAL_SEARCH_TOKEN"):
            await wrong.search("acme", "handbook", "refunds")
        await wrong.aclose()
        right = RemoteSearcher(url, token="svc-token-123")
        with pytest.raises(UnknownCollection):  # past the token: the tenant has no such collection
            await right.search("acme", "handbook", "refunds")
        await right.aclose()
    finally:
        await server.stop()


async def test_rag_ingest_refuses_a_search_api_beyond_loopback_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cadenza_rag.__main__ import serve
    from cadenza_rag.settings import RagSettings
    from cadenza_runtime import InsecureEndpoint

    monkeypatch.delenv("CADENZA_RETRIEVAL_SEARCH_TOKEN", raising=False)
    with pytest.raises(InsecureEndpoint, match="CADENZA_RETRIEVAL_SEARCH_TOKEN"):
        await serve(RagSettings(search_host="0.0.0.0", search_port=9))
