"""The vector store's contract: generations make replacement atomic for readers, tenants
and collections are isolated, filters and both ranking modes work, one client per folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest
from cadenza_retrieval import (
    Chunk,
    DocumentInfo,
    GenerationLookup,
    RetrievalSettings,
    Retriever,
    open_store,
    release_store,
)
from support.imports import loaded_after

pytestmark = pytest.mark.unit


@pytest.fixture
def retriever(tmp_path: Path) -> Iterator[Retriever]:
    r = Retriever(RetrievalSettings(qdrant_path=tmp_path / "q", embed_threads=1))
    yield r
    r.close()


def _info(doc: str, **meta: str) -> DocumentInfo:
    return DocumentInfo(document_id=doc, title=f"{doc}.txt", collection="kb", metadata=meta)


def _chunks(*texts: str) -> list[Chunk]:
    return [Chunk(text=t, position=i) for i, t in enumerate(texts)]


async def test_readers_see_one_generation_of_a_document(retriever: Retriever) -> None:
    await retriever.write_document("t", _info("policy"), _chunks("Refunds take 14 days."), 1)
    await retriever.write_document(
        "t", _info("policy"), _chunks("Refunds take 30 days.", "Refunds need a receipt."), 2
    )
    # Both generations are stored; the catalog decides which one readers see.
    old = await retriever.search("t", "kb", "refunds", k=5, generations=_fixed({"policy": 1}))
    assert [h.text for h in old] == ["Refunds take 14 days."]
    new = await retriever.search("t", "kb", "refunds", k=5, generations=_fixed({"policy": 2}))
    assert sorted(h.text for h in new) == ["Refunds need a receipt.", "Refunds take 30 days."]
    # Without a catalog the newest generation wins.
    assert {h.text for h in await retriever.search("t", "kb", "refunds", k=5)} == {
        "Refunds need a receipt.",
        "Refunds take 30 days.",
    }
    await retriever.drop_other_generations("t", "kb", "policy", 2)
    assert await retriever.store.count("t", "kb", "policy") == 2
    deleted = await retriever.search("t", "kb", "refunds", k=5, generations=_fixed({}))
    assert deleted == []


def _fixed(generations: dict[str, int]) -> GenerationLookup:
    async def lookup(ids: Collection[str]) -> dict[str, int]:
        return generations

    return lookup


async def test_tenants_collections_filters_and_modes(retriever: Retriever) -> None:
    await retriever.write_document(
        "t1", _info("a", lang="en"), _chunks("The SKU-4471 pallet jack is in aisle 9."), 1
    )
    await retriever.write_document(
        "t1", _info("b", lang="de"), _chunks("Der Gabelstapler steht in Halle 3."), 1
    )
    await retriever.write_document("t2", _info("c"), _chunks("Secret plans of tenant two."), 1)
    for mode in ("vector", "hybrid"):
        hits = await retriever.search("t1", "kb", "where is SKU-4471", k=2, mode=mode)
        assert hits[0].citation.document_id == "a"
        assert hits[0].citation.title == "a.txt"
    only_de = await retriever.search("t1", "kb", "pallet jack", k=5, filters={"lang": "de"})
    assert [h.citation.document_id for h in only_de] == ["b"]
    assert all(h.citation.document_id != "c" for h in await retriever.search("t1", "kb", "plans"))
    assert await retriever.search("t1", "other", "plans") == []
    with pytest.raises(ValueError, match="k: must be between"):
        await retriever.search("t1", "kb", "x", k=0)
    with pytest.raises(ValueError, match="query: must not be empty"):
        await retriever.search("t1", "kb", "  ")


def test_one_process_shares_one_client_per_folder(tmp_path: Path) -> None:
    settings = RetrievalSettings(qdrant_path=tmp_path / "q")
    first, second = open_store(settings), open_store(settings)
    assert first is second
    script = (
        "import sys; from pathlib import Path\n"
        "from cadenza_retrieval import RetrievalSettings, StoreInUse, open_store\n"
        "try:\n"
        f"    open_store(RetrievalSettings(qdrant_path=Path({str(tmp_path / 'q')!r})))\n"
        "except StoreInUse as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert other.returncode == 3, other.stderr
    assert "CADENZA_RETRIEVAL_QDRANT_URL" in other.stdout
    release_store(first)
    release_store(second)  # the last user closes it: the folder can be opened again
    third = open_store(settings)
    assert third is not first
    release_store(third)


def test_processes_that_search_through_rag_ingest_never_load_qdrant(tmp_path: Path) -> None:
    """The gateway and the workers search through rag-ingest: importing them must not load
    the Qdrant client (~0.65 s of CPU at every process start). A retriever of its own does."""
    services = "import cadenza_gateway.app, cadenza_worker, cadenza_retrieval"
    assert loaded_after(services, {"qdrant_client"}) == set()
    own = (
        "from pathlib import Path\n"
        "import cadenza_retrieval as r\n"
        f"r.Retriever(r.RetrievalSettings(qdrant_path=Path({str(tmp_path / 'q')!r}))).close()"
    )
    assert loaded_after(own, {"qdrant_client"}) == {"qdrant_client"}
