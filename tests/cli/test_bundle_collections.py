"""Bundles with document collections (``collections/<name>/``): folders and files checked
before anything is sent; deploying creates the collection, uploads, replaces changed
documents, leaves identical ones alone and waits until all are indexed — against the
gateway app with rag-ingest running on shared in-process resources."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cadenza_cli.bundle_documents import CONTENT_TYPES
from cadenza_cli.bundles import Bundle, BundleError, deploy_bundle, load_bundle
from cadenza_client import AsyncCadenza
from cadenza_gateway import GatewaySettings, create_app
from cadenza_rag import RagIngest, RagSettings
from cadenza_retrieval import EXTENSIONS, RetrievalSettings, Retriever, visible_generations
from cadenza_runtime import Resources
from support.auth import TenantKeys
from support.stacks import stack_resources

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

WORKFLOW = """\
name: ask
tasks:
  - id: echo
    tool: transform
    with: {ok: true}
"""
REFUNDS = """# Refunds

Unused items can be returned within 45 days of delivery for a full refund to the
original card.
"""
SHIPPING = "Parcels leave the Tilburg warehouse every working day before 14:00 CET.\n"


def write_bundle(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"workflow.yaml": WORKFLOW, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --------------------------------------------------------------------------- loading


def test_collections_are_found_with_their_documents(tmp_path: Path) -> None:
    bundle = load_bundle(
        write_bundle(
            tmp_path / "b",
            {
                "collections/handbook/shipping.txt": SHIPPING,
                "collections/handbook/refunds.md": REFUNDS,
                "collections/handbook/.DS_Store": "x",  # hidden files are not documents
                "collections/faq-2/q.json": '{"q": 1}',
            },
        )
    )
    found = {c.name: [(d.title, d.content_type) for d in c.documents] for c in bundle.collections}
    assert found == {
        "faq-2": [("q.json", "application/json")],
        "handbook": [("refunds.md", "text/markdown"), ("shipping.txt", "text/plain")],
    }


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"collections/Hand Book/a.md": REFUNDS},
            "b/collections/Hand Book: invalid collection name 'Hand Book'",
        ),
        (
            {"collections/_drafts/a.md": REFUNDS},
            "b/collections/_drafts: invalid collection name",
        ),
        (
            {"collections/handbook/a.md": REFUNDS, "collections/handbook/notes.docx": "x"},
            "b/collections/handbook/notes.docx: not a document: use txt, md, html, json, pdf",
        ),
        (
            {"collections/handbook/sub/a.md": REFUNDS},
            "b/collections/handbook/sub: not a document",
        ),
        (
            {"collections/refunds.md": REFUNDS},
            "b/collections/refunds.md: documents go in a collection folder",
        ),
        ({"collections/handbook/a.md": ""}, "b/collections/handbook/a.md: the file is empty"),
    ],
)
def test_bad_collections_are_refused_naming_the_folder_or_file(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(BundleError, match=re.escape(message)):
        load_bundle(write_bundle(tmp_path / "b", files))


def test_document_extensions_are_ones_rag_ingest_reads() -> None:
    assert CONTENT_TYPES.items() <= EXTENSIONS.items()


def test_the_handbook_example_loads() -> None:
    bundle = load_bundle(ROOT / "examples" / "handbook-qa")
    (agent,) = bundle.agents
    assert agent.spec.name == "handbook-assistant"
    assert agent.spec.model == "local:smollm2-135m"
    assert agent.spec.tools == ["rag_search"]
    assert agent.spec.tool_choice == "required"
    schema = agent.spec.output_schema or {}
    assert schema["required"] == ["answer", "source"]
    assert schema["additionalProperties"] is False
    (collection,) = bundle.collections
    assert collection.name == "handbook"
    titles = [d.title for d in collection.documents]
    assert 5 <= len(titles) <= 6
    assert "refunds.md" in titles
    assert all(d.content_type == "text/markdown" for d in collection.documents)
    assert bundle.inputs["question"]


# --------------------------------------------------------------------------- deploying


@pytest_asyncio.fixture
async def resources(
    tmp_path: Path, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[Resources]:
    async with stack_resources("unit", tmp_path, unique_id, require_services) as res:
        yield res


@pytest.fixture
def retriever(tmp_path: Path) -> Any:
    r = Retriever(RetrievalSettings(qdrant_path=tmp_path / "qdrant", embed_threads=1))
    yield r
    r.close()


@pytest_asyncio.fixture
async def ingest(resources: Resources, retriever: Retriever) -> AsyncIterator[RagIngest]:
    service = RagIngest(resources, RagSettings(chunk_chars=300, overlap_chars=50), retriever)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def auth(resources: Resources) -> TenantKeys:
    return TenantKeys(resources)


@pytest.fixture
def transport(resources: Resources) -> httpx.ASGITransport:
    """The gateway app alone; tests that need indexing also request ``ingest``."""
    app = create_app(resources, GatewaySettings())
    return httpx.ASGITransport(app=app, raise_app_exceptions=False)


@pytest_asyncio.fixture
async def client(
    transport: httpx.ASGITransport, auth: TenantKeys
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", auth=auth
    ) as c:
        yield c


@pytest_asyncio.fixture
async def cadenza(transport: httpx.ASGITransport, auth: TenantKeys) -> AsyncIterator[AsyncCadenza]:
    """The typed client the CLI deploys with, on the same app and key."""
    async with AsyncCadenza("http://gateway.test", api_key="", transport=transport) as c:
        c.http.auth = auth
        yield c


async def deploy(cadenza: AsyncCadenza, bundle: Bundle, **kwargs: Any) -> str:
    out = io.StringIO()
    body = await deploy_bundle(cadenza, bundle, {}, out, **kwargs)
    assert body["spec"]["name"] == "ask"
    return out.getvalue()


async def documents(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    resp = await client.get("/v1/collections/handbook/documents")
    assert resp.status_code == 200, resp.text
    return {d["title"]: d for d in resp.json()["items"]}


async def test_deploy_indexes_then_skips_unchanged_and_replaces_changed(
    client: httpx.AsyncClient,
    cadenza: AsyncCadenza,
    ingest: RagIngest,
    resources: Resources,
    retriever: Retriever,
    tmp_path: Path,
) -> None:
    root = write_bundle(
        tmp_path / "b",
        {"collections/handbook/refunds.md": REFUNDS, "collections/handbook/shipping.txt": SHIPPING},
    )
    out = await deploy(cadenza, load_bundle(root))
    assert re.search(r"document handbook/refunds\.md +indexed \(\d+ chunks\)", out), out
    assert re.search(r"document handbook/shipping\.txt +indexed \(1 chunks\)", out), out
    first = await documents(client)
    assert sorted(first) == ["refunds.md", "shipping.txt"]
    assert {d["status"] for d in first.values()} == {"indexed"}
    collection = (await client.get("/v1/collections/handbook")).json()
    assert collection["documents"] == 2

    # Again: the collection exists (409) and nothing is uploaded.
    out = await deploy(cadenza, load_bundle(root))
    assert out.count("unchanged") == 2, out
    assert "indexed" not in out
    assert {t: d["id"] for t, d in (await documents(client)).items()} == {
        t: d["id"] for t, d in first.items()
    }

    # A changed file replaces its document (same id) rather than adding a second one.
    (root / "collections/handbook/refunds.md").write_text(
        "# Refunds\n\nStore credit is the only refund for items bought at the Eindhoven pop-up.\n"
    )
    out = await deploy(cadenza, load_bundle(root))
    assert re.search(r"document handbook/refunds\.md +indexed", out), out
    assert re.search(r"document handbook/shipping\.txt +unchanged", out), out
    after = await documents(client)
    assert {t: d["id"] for t, d in after.items()} == {t: d["id"] for t, d in first.items()}
    assert after["refunds.md"]["content_hash"] != first["refunds.md"]["content_hash"]
    tenant = GatewaySettings().default_tenant
    hits = await retriever.search(
        tenant,
        "handbook",
        "refunds for the Eindhoven pop-up",
        k=5,
        generations=visible_generations(resources.sessions, tenant),
    )
    refunds = [h for h in hits if h.citation.title == "refunds.md"]
    assert refunds
    assert all("Eindhoven" in h.text for h in refunds)  # only the new version is served
    assert hits[0].citation.title == "refunds.md"


async def test_a_document_that_fails_to_index_names_the_file(
    client: httpx.AsyncClient, cadenza: AsyncCadenza, ingest: RagIngest, tmp_path: Path
) -> None:
    root = write_bundle(
        tmp_path / "b",
        {"collections/handbook/a.md": REFUNDS, "collections/handbook/broken.json": '{"a": '},
    )
    with pytest.raises(BundleError, match=r"b/collections/handbook/broken\.json: .*invalid JSON"):
        await deploy(cadenza, load_bundle(root))
    assert (await documents(client))["broken.json"]["status"] == "failed"


async def test_the_wait_for_indexing_is_bounded(cadenza: AsyncCadenza, tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"collections/handbook/a.md": REFUNDS})
    # No rag-ingest: the document stays queued.
    with pytest.raises(
        BundleError, match=r"b/collections/handbook/a\.md: still queued .*rag-ingest"
    ):
        await deploy(cadenza, load_bundle(root), index_timeout_s=0.3)
