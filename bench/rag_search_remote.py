"""What searching through rag-ingest's search API costs over searching in process.

Separate service processes on Qdrant's local mode search through rag-ingest
(`CADENZA_RETRIEVAL_SEARCH_URL`, docs/rag.md). This indexes `--points` synthetic chunks
(random unit vectors) into one collection, registers their documents, then runs the same
`--queries` searches twice in this process: in process (`Retriever.search`) and through
the search API over loopback HTTP (`RemoteSearcher` → `POST /v1/search` → the same
`Retriever`). Both apply the documents table's visible generations. Prints one JSON line:
p50/p99 of each and their ratio.

    uv run python bench/rag_search_remote.py [--points 10000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from cadenza_cli.dev import dev_settings
from cadenza_rag import create_search_app
from cadenza_retrieval import (
    RemoteSearcher,
    RetrievalSettings,
    Retriever,
    visible_generations,
)
from cadenza_runtime import HttpServer, open_resources
from cadenza_state import CollectionRecord, DocumentRecord
from rag_ingest import CHUNKS_PER_DOC, load_synthetic_points  # bench/ is on sys.path

TENANT, COLLECTION = "bench", "big"


async def load(retriever: Retriever, resources: Any, points: int) -> None:
    await load_synthetic_points(retriever, TENANT, COLLECTION, points, np.random.default_rng(7))
    async with resources.sessions() as session, session.begin():
        session.add(CollectionRecord(tenant_id=TENANT, name=COLLECTION))
        for d in range(points // CHUNKS_PER_DOC):
            session.add(
                DocumentRecord(
                    id=f"d{d}",
                    tenant_id=TENANT,
                    collection=COLLECTION,
                    title="synthetic",
                    content_type="text/plain",
                    object_ref=f"bench/d{d}",
                    status="indexed",
                    generation=1,
                )
            )


async def timed(search: Callable[[str], Awaitable[list[Any]]], queries: list[str]) -> list[float]:
    await search("warm up")
    out = []
    for q in queries:
        start = time.perf_counter()
        hits = await search(q)
        out.append((time.perf_counter() - start) * 1000)
        assert len(hits) == 5, hits
    return sorted(out)


def p(values: list[float], q: float) -> float:
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        resources = await open_resources(*dev_settings(Path(tmp)))
        retriever = Retriever(RetrievalSettings(qdrant_path=Path(tmp) / "qdrant"))
        await load(retriever, resources, args.points)
        server = HttpServer(create_search_app(retriever, resources.sessions), "127.0.0.1", 0)
        await server.start()
        remote = RemoteSearcher(f"http://127.0.0.1:{server.port}")
        generations = visible_generations(resources.sessions, TENANT)
        queries = [f"where is order {i} and its parcel" for i in range(args.queries)]
        try:
            local = await timed(
                lambda q: retriever.search(TENANT, COLLECTION, q, k=5, generations=generations),
                queries,
            )
            through_api = await timed(lambda q: remote.search(TENANT, COLLECTION, q, k=5), queries)
        finally:
            await remote.aclose()
            await server.stop()
            retriever.close()
            await resources.close()
    print(
        json.dumps(
            {
                "points": args.points,
                "queries": args.queries,
                "in_process_p50_ms": round(statistics.median(local), 2),
                "in_process_p99_ms": p(local, 0.99),
                "search_api_p50_ms": round(statistics.median(through_api), 2),
                "search_api_p99_ms": p(through_api, 0.99),
                "p50_ratio": round(statistics.median(through_api) / statistics.median(local), 2),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
