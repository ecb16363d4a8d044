"""rag-ingest is killed with SIGKILL in the middle of ingesting a batch of documents.

The documents are queued first (``doc.ingest`` events through the gateway's outbox); then
rag-ingest starts, and is killed as soon as it is processing one. A new rag-ingest process
redelivers what the dead one had not committed: every document ends ``indexed``, and the
vector store holds each document's chunks exactly once (no half-written generation left
visible or stored twice)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cadenza_retrieval import RetrievalSettings
from cadenza_retrieval.store import open_store, release_store
from support import assert_eventually
from support.drills import deployment

pytestmark = pytest.mark.timeout(300)

HANDBOOK = Path(__file__).resolve().parents[2] / "examples" / "handbook-qa" / "collections"
COLLECTION = "drill"
TENANT = "default"  # the deployment's anonymous (dev-mode) tenant


def documents() -> list[tuple[str, bytes]]:
    """The handbook's documents plus a few generated ones, so the ingest takes a while."""
    docs = [(p.name, p.read_bytes()) for p in sorted(HANDBOOK.rglob("*.md"))]
    for i in range(6):
        body = "\n\n".join(
            f"## Section {j}\n\nPolicy {i}.{j}: requests of type {i} in region {j} are "
            f"answered within {i + j} business days by the team on duty." * 3
            for j in range(8)
        )
        docs.append((f"generated-{i}.md", f"# Generated policy {i}\n\n{body}\n".encode()))
    return docs


async def test_kill_9_rag_ingest_mid_ingest(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> None:
    require_services("kafka", "postgres", "redis", "minio")
    async with deployment(unique_id, tmp_path) as (cluster, api, _db):
        created = await api.post("/v1/collections", json={"name": COLLECTION})
        assert created.status_code == 201, created.text
        uploads = documents()
        ids = []
        for name, content in uploads:
            resp = await api.post(
                f"/v1/collections/{COLLECTION}/documents",
                files={"file": (name, content, "text/markdown")},
            )
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])

        async def statuses() -> dict[str, str]:
            resp = await api.get(f"/v1/collections/{COLLECTION}/documents?limit=100")
            assert resp.status_code == 200, resp.text
            return {d["id"]: d["status"] for d in resp.json()["items"]}

        assert set((await statuses()).values()) == {"queued"}
        ingest = cluster.start_rag_ingest()

        async def processing() -> bool:
            seen = await statuses()
            assert list(seen.values()).count("indexed") < len(ids), "ingested before the kill"
            return "processing" in seen.values()

        await assert_eventually(processing, timeout=120, interval=0.02)
        ingest.kill()
        before = await statuses()
        print(f"killed rag-ingest with documents {sorted(before.values())}")
        assert "processing" in before.values()

        replacement = cluster.start_rag_ingest()

        async def all_indexed() -> dict[str, str]:
            seen = await statuses()
            assert set(seen.values()) == {"indexed"}, seen
            return seen

        await assert_eventually(all_indexed, timeout=180, interval=0.25)
        docs = {
            d["id"]: d
            for d in (await api.get(f"/v1/collections/{COLLECTION}/documents?limit=100")).json()[
                "items"
            ]
        }
        assert set(docs) == set(ids)
        replacement.stop()  # local Qdrant is one process's: release it to count the points

        store = open_store(RetrievalSettings(qdrant_path=tmp_path / "qdrant"))
        try:
            counts = {i: await store.count(TENANT, COLLECTION, i) for i in ids}
        finally:
            release_store(store)
        expected = {i: docs[i]["chunk_count"] for i in ids}
        assert all(n > 0 for n in expected.values()), expected
        assert counts == expected, "a document's chunks are stored twice or missing"
