from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from cadenza_events import BusSettings, DocIngest, Envelope, Topic
from cadenza_rag import RagIngest, RagSettings, chunk_text, chunks_key
from cadenza_runtime import open_resources
from cadenza_state import StateSettings
from support import assert_eventually

pytestmark = pytest.mark.unit


def test_chunks_overlap_and_cover_the_text() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(text, size=200, overlap=50)
    assert len(chunks) > 5
    assert all(len(c) <= 200 for c in chunks)
    assert chunks[0].startswith("word0 ")
    assert chunks[-1].endswith("word399")
    for left, right in itertools.pairwise(chunks):
        assert left.split()[-1] in right.split()[:12], "neighbours share an overlap"


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("  \n ", 100, 10) == []


async def test_doc_ingest_event_produces_chunks(tmp_path: Path) -> None:
    resources = await open_resources(
        BusSettings(backend="memory"),
        StateSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            redis_backend="memory",
            object_store="local",
            object_store_dir=tmp_path / "objects",
        ),
    )
    service = RagIngest(resources, RagSettings(chunk_chars=100, overlap_chars=20))
    await service.start()
    try:
        text = "Refunds are issued within 14 days. " * 20
        await resources.objects.put("uploads/policy.txt", text.encode(), content_type="text/plain")
        await resources.publisher.publish(
            Topic.DOC_INGEST,
            Envelope(
                payload=DocIngest(document_id="policy", object_ref="uploads/policy.txt"),
                source="/tests",
                tenant_id="acme",
                subject="policy",
            ),
        )
        await assert_eventually(lambda: resources.objects.exists(chunks_key("policy")))
        raw = await resources.objects.get(chunks_key("policy"))
        body = json.loads(raw)
        assert body["tenant_id"] == "acme"
        assert len(body["chunks"]) == len(chunk_text(text, 100, 20)) > 3
    finally:
        await service.stop()
        await resources.close()
