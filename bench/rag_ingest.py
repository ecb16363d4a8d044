"""RAG ingest and search benchmark. Prints one JSON line.

Part 1 — ingest end to end: `--docs` markdown documents go through the real path of
`cadenza dev` (object store folder → doc.ingest on the in-process bus → rag-ingest: parse,
chunk, embed, write to local Qdrant, status in SQLite); documents/s and chunks/s from the
first event to the last `indexed` status, against the raw `Embedder.encode` time of the
same chunk texts (target: end to end <= 1.2x raw encode).

Part 2 — search at scale: `--points` synthetic chunks (random unit vectors; the text does
not matter for vector search) in one Qdrant collection, then `--queries` real searches
(query embedding included); p50/p99 latency.

    uv run python bench/rag_ingest.py [--docs 60] [--points 100000] [--queries 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from cadenza_cli.dev import dev_settings
from cadenza_events import DocIngest, Envelope, Topic
from cadenza_rag import RagIngest, RagSettings, chunk_sections, parse_document
from cadenza_retrieval import DIMENSIONS, RetrievalSettings, Retriever, get_embedder
from cadenza_retrieval.store import DENSE
from cadenza_runtime import open_resources
from cadenza_state import CollectionRecord, DocumentRecord
from qdrant_client import models as qm
from sqlalchemy import func, select

WORDS = [
    "invoice",
    "refund",
    "parcel",
    "warehouse",
    "courier",
    "payment",
    "customer",
    "account",
    "password",
    "discount",
    "voucher",
    "delivery",
    "return",
    "warranty",
    "battery",
    "screen",
    "order",
    "cancel",
    "schedule",
    "pickup",
    "label",
    "driver",
    "route",
    "pallet",
    "supplier",
    "contract",
    "tax",
    "receipt",
    "bank",
    "card",
    "transfer",
    "limit",
]


def synthetic_document(i: int, rng: np.random.Generator) -> str:
    sections = []
    for s in range(4):
        sentences = [
            " ".join(rng.choice(WORDS, size=12)).capitalize() + "."
            for _ in range(rng.integers(8, 14))
        ]
        sections.append(f"## Section {s} of document {i}\n\n" + " ".join(sentences))
    return f"# Document {i}\n\n" + "\n\n".join(sections)


async def ingest_part(docs: int, tmp: Path) -> dict[str, float]:
    rng = np.random.default_rng(7)
    texts = [synthetic_document(i, rng) for i in range(docs)]
    rag = RagSettings(concurrency=4)
    resources = await open_resources(*dev_settings(tmp))  # exactly `cadenza dev`'s stack
    retriever = Retriever(RetrievalSettings(qdrant_path=tmp / "qdrant"))
    get_embedder().encode(["warm up"])  # model load is a start-up cost, not ingest
    service = RagIngest(resources, rag, retriever)
    await service.start()
    async with resources.sessions() as session, session.begin():
        session.add(CollectionRecord(tenant_id="bench", name="kb"))
    for i, text in enumerate(texts):
        await resources.objects.put(f"bench/{i}.md", text.encode(), content_type="text/markdown")
    start = time.perf_counter()
    for i in range(docs):
        doc = DocIngest(
            document_id=f"doc-{i}",
            object_ref=f"bench/{i}.md",
            content_type="text/markdown",
            collection="kb",
        )
        env = Envelope(payload=doc, source="/bench", tenant_id="bench", subject=doc.document_id)
        await resources.publisher.publish(Topic.DOC_INGEST, env)
    while True:
        async with resources.sessions() as session:
            done = await session.scalar(
                select(func.count()).where(DocumentRecord.status.in_(["indexed", "failed"]))
            )
            chunks = await session.scalar(select(func.sum(DocumentRecord.chunk_count)))
        if done == docs:
            break
        await asyncio.sleep(0.05)
    end_to_end = time.perf_counter() - start
    await service.stop()
    retriever.close()
    await resources.close()

    chunk_texts = []
    for text in texts:
        for c in chunk_sections(
            parse_document(text.encode(), "text/markdown"), rag.chunk_chars, rag.overlap_chars
        ):
            chunk_texts.append(f"{c.heading}\n{c.text}" if c.heading else c.text)
    start = time.perf_counter()
    get_embedder().encode(chunk_texts)
    raw = time.perf_counter() - start
    assert len(chunk_texts) == chunks, (len(chunk_texts), chunks)
    return {
        "ingest_documents": docs,
        "ingest_chunks": int(chunks or 0),
        "end_to_end_s": round(end_to_end, 2),
        "raw_encode_s": round(raw, 2),
        "end_to_end_over_raw_encode": round(end_to_end / raw, 3),
        "documents_per_s": round(docs / end_to_end, 2),
        "chunks_per_s": round((chunks or 0) / end_to_end, 1),
        "raw_encode_chunks_per_s": round(len(chunk_texts) / raw, 1),
    }


CHUNKS_PER_DOC = 10


async def load_synthetic_points(
    retriever: Retriever, tenant: str, collection: str, points: int, rng: np.random.Generator
) -> None:
    """``points`` random unit vectors as chunks of documents ``d0``, ``d1``, … (10 each,
    generation 1) in the tenant's collection; the text does not matter to vector search."""
    name = await retriever.store.ensure_collection(tenant, collection)
    batch = 5000
    for offset in range(0, points, batch):
        vectors = rng.standard_normal((min(batch, points - offset), DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        retriever.store.client.upload_points(
            name,
            [
                qm.PointStruct(
                    id=str(uuid.uuid4()),
                    vector={DENSE: v.tolist()},
                    payload={
                        "document_id": f"d{(offset + j) // CHUNKS_PER_DOC}",
                        "title": "synthetic",
                        "collection": collection,
                        "generation": 1,
                        "position": (offset + j) % CHUNKS_PER_DOC,
                        "text": "synthetic chunk",
                    },
                )
                for j, v in enumerate(vectors)
            ],
            wait=True,
        )


async def search_part(points: int, queries: int) -> dict[str, float]:
    retriever = Retriever(RetrievalSettings(qdrant_path=Path(":memory:")))
    rng = np.random.default_rng(11)
    start = time.perf_counter()
    await load_synthetic_points(retriever, "bench", "big", points, rng)
    load = time.perf_counter() - start
    questions = [
        f"where is the {w} for order {i}" for i, w in enumerate(rng.choice(WORDS, queries))
    ]
    await retriever.search("bench", "big", "warm up", k=5, mode="vector")
    latencies = []
    for q in questions:
        t = time.perf_counter()
        hits = await retriever.search("bench", "big", q, k=5, mode="vector")
        latencies.append((time.perf_counter() - t) * 1000)
        assert len(hits) == 5
    retriever.close()
    latencies.sort()
    return {
        "search_points": points,
        "search_load_s": round(load, 1),
        "search_p50_ms": round(statistics.median(latencies), 1),
        "search_p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
    }


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = await ingest_part(args.docs, Path(tmp))
    result |= await search_part(args.points, args.queries)
    result["store"] = "qdrant local mode (embedded, exact search)"
    print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
