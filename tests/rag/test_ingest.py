"""rag-ingest on its own: upstream doc.ingest events, failures that leave the consumer
running, no re-embedding of unchanged content, and searches during a large ingest."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cadenza_events import DocIngest, Envelope, Topic
from cadenza_rag import RagIngest
from cadenza_retrieval import Retriever
from cadenza_runtime import Resources
from cadenza_state import CollectionRecord, DocumentRecord
from support import assert_eventually

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def _collection(resources: Resources, name: str = "kb", tenant: str = "acme") -> None:
    async with resources.sessions() as session, session.begin():
        session.add(CollectionRecord(tenant_id=tenant, name=name))


async def _publish(resources: Resources, doc_id: str, ref: str, **kw: Any) -> None:
    payload = DocIngest(
        document_id=doc_id, object_ref=ref, collection=kw.pop("collection", "kb"), **kw
    )
    env = Envelope(payload=payload, source="/tests", tenant_id="acme", subject=doc_id)
    await resources.publisher.publish(Topic.DOC_INGEST, env)


async def _status(resources: Resources, doc_id: str, *statuses: str) -> DocumentRecord:
    async def check() -> DocumentRecord:
        async with resources.sessions() as session:
            record = await session.get(DocumentRecord, doc_id)
        assert record is not None
        assert record.status in statuses, (record.status, record.error)
        return record

    result: DocumentRecord = await assert_eventually(check, timeout=60)
    return result


async def test_upstream_events_ingest_objects_and_bad_ones_fail_without_stopping(
    resources: Resources, ingest: RagIngest, retriever: Retriever
) -> None:
    await _collection(resources)
    await resources.objects.put("up/policy.txt", b"Refunds are issued within 14 days.")
    await resources.objects.put("up/photo.png", b"\x89PNG....")
    await _publish(resources, "missing", "up/nothing.txt")
    await _publish(resources, "photo", "up/photo.png", content_type="image/png")
    await _publish(resources, "stray", "up/policy.txt", collection="nope")
    await _publish(resources, "policy", "up/policy.txt", title="Policy", metadata={"lang": "en"})

    policy = await _status(resources, "policy", "indexed")
    assert (policy.title, policy.chunk_count, policy.meta) == ("Policy", 1, {"lang": "en"})
    assert "not found" in (await _status(resources, "missing", "failed")).error
    assert "image/png" in (await _status(resources, "photo", "failed")).error
    assert "unknown collection 'nope'" in (await _status(resources, "stray", "failed")).error
    hits = await retriever.search("acme", "kb", "how long do refunds take", k=1)
    assert hits[0].citation.document_id == "policy"
    assert hits[0].metadata == {"lang": "en"}
    assert await retriever.search("other-tenant", "kb", "refunds", k=1) == []


@unit_only
async def test_unchanged_content_is_not_embedded_again(
    resources: Resources, ingest: RagIngest, retriever: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _collection(resources)
    writes: list[str] = []
    original = retriever.write_document

    async def counting(tenant_id: str, info: Any, chunks: Any, generation: int) -> None:
        writes.append(info.document_id)
        await original(tenant_id, info, chunks, generation)

    monkeypatch.setattr(retriever, "write_document", counting)
    await resources.objects.put("up/a.txt", b"Alpha text about invoices.")
    await _publish(resources, "a", "up/a.txt")
    first = await _status(resources, "a", "indexed")
    await _publish(resources, "a", "up/a.txt")  # a redelivery, or a re-upload of the same bytes

    async def handled_twice() -> bool:
        async with resources.sessions() as session:
            record = await session.get(DocumentRecord, "a")
        return record is not None and record.updated_at > first.updated_at

    await assert_eventually(handled_twice, timeout=30)
    assert writes == ["a"]
    assert await retriever.store.count("acme", "kb", "a") == 1


@unit_only
async def test_searches_proceed_while_a_large_document_ingests(
    resources: Resources, ingest: RagIngest, retriever: Retriever
) -> None:
    await _collection(resources)
    await resources.objects.put("up/small.txt", b"The office coffee machine is on floor two.")
    await _publish(resources, "small", "up/small.txt")
    await _status(resources, "small", "indexed")
    large = "\n\n".join(
        f"Paragraph {i} about warehouse logistics and pallets." * 5 for i in range(120)
    )
    await resources.objects.put("up/large.txt", large.encode())
    await _publish(resources, "large", "up/large.txt")
    await _status(resources, "large", "processing")

    latencies = []
    while True:
        async with resources.sessions() as session:
            record = await session.get(DocumentRecord, "large")
        if record is not None and record.status == "indexed":
            break
        start = time.perf_counter()
        hits = await retriever.search("acme", "kb", "where is the coffee machine", k=1)
        latencies.append(time.perf_counter() - start)
        assert hits[0].citation.document_id == "small"
        await asyncio.sleep(0.05)
    assert record.chunk_count > 50
    assert len(latencies) >= 3, "the ingest finished before searches could overlap it"
    # Each search waited for neither the whole ingest nor its embedding batches in turn.
    assert max(latencies) < 5.0, latencies
