"""RAG fixtures: the ingest service, the gateway and a retriever on one set of Resources,
parametrized over two stacks like the gateway's tests.

``unit``: SQLite + in-process bus + local objects. ``integration``: real PostgreSQL (fresh
schema), MinIO (fresh bucket) and Kafka (fresh topic prefix). Qdrant runs in local mode in
a temporary folder in both (one client per folder per process: the store is shared)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cadenza_gateway import GatewaySettings, create_app
from cadenza_rag import RagIngest, RagSettings
from cadenza_retrieval import RetrievalSettings, Retriever
from cadenza_runtime import Resources
from cadenza_worker.tools import ToolContext
from support import assert_eventually
from support.auth import TenantKeys
from support.stacks import mark_by_stack, stack_resources

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_by_stack(items, HERE)


@pytest.fixture(params=["unit", "integration"])
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def resources(
    stack: str, tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    async with stack_resources(stack, tmp_path, unique_id, require_services) as res:
        yield res


@pytest.fixture
def retrieval_settings(tmp_path: Path) -> RetrievalSettings:
    return RetrievalSettings(qdrant_path=tmp_path / "qdrant", embed_threads=1)


@pytest.fixture
def retriever(retrieval_settings: RetrievalSettings) -> Any:
    r = Retriever(retrieval_settings)
    yield r
    r.close()


@pytest.fixture
def rag_settings() -> RagSettings:
    return RagSettings(chunk_chars=300, overlap_chars=50, max_document_bytes=64 * 1024)


@pytest_asyncio.fixture
async def ingest(
    resources: Resources, rag_settings: RagSettings, retriever: Retriever
) -> AsyncIterator[RagIngest]:
    service = RagIngest(resources, rag_settings, retriever)
    await service.start()
    yield service
    await service.stop()


@pytest_asyncio.fixture
async def client(
    resources: Resources, retriever: Retriever, ingest: RagIngest
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway (with the relay publishing its outbox) next to a running ingest."""
    settings = GatewaySettings(max_body_bytes=64 * 1024, max_document_bytes=32 * 1024)
    app = create_app(resources, settings, searcher=retriever)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    auth = TenantKeys(resources)  # all scopes of tenant default; X-Tenant-Id picks another
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", auth=auth
    ) as c:
        yield c


@pytest.fixture
def upload(client: httpx.AsyncClient) -> Callable[..., Awaitable[httpx.Response]]:
    async def post(
        collection: str, name: str, content: bytes, content_type: str = "text/plain", **form: str
    ) -> httpx.Response:
        return await client.post(
            f"/v1/collections/{collection}/documents",
            files={"file": (name, content, content_type)},
            data=form,
        )

    return post


@pytest.fixture
def wait_status(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def wait(collection: str, doc_id: str, *statuses: str) -> dict[str, Any]:
        async def check() -> dict[str, Any]:
            resp = await client.get(f"/v1/collections/{collection}/documents/{doc_id}")
            assert resp.status_code == 200, resp.text
            body = dict(resp.json())
            assert body["status"] in statuses, body
            return body

        return dict(await assert_eventually(check, timeout=60))

    return wait


@pytest.fixture
def tool_context(resources: Resources) -> Callable[..., ToolContext]:
    """A `rag_search` call's context for ``tenant`` on the stack's resources."""

    def make(tenant: str = "acme") -> ToolContext:
        return ToolContext(
            tenant_id=tenant,
            run_id="r",
            task_id="r/t",
            node_id="t",
            attempt=1,
            try_number=1,
            hot=resources.hot,
            objects=resources.objects,
            sessions=resources.sessions,
        )

    return make
