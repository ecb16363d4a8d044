"""Retrieval quality on examples/rag: recall@5, recall@1 and MRR of vector and hybrid
ranking.

Indexes every document of examples/rag/docs the way rag-ingest does (same parser,
chunker and settings), asks each question of examples/rag/questions.json, and counts a
hit when a chunk of the expected document is among the top 5. Prints one JSON line.

    uv run python bench/rag_eval.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from cadenza_rag import RagSettings, chunk_sections, parse_document
from cadenza_retrieval import DocumentInfo, RetrievalSettings, Retriever, resolve_content_type

ROOT = Path(__file__).resolve().parents[1] / "examples" / "rag"
K = 5


async def main() -> dict[str, object]:
    questions = json.loads((ROOT / "questions.json").read_text())
    rag = RagSettings()
    with tempfile.TemporaryDirectory() as tmp:
        retriever = Retriever(RetrievalSettings(qdrant_path=Path(tmp)))
        chunks_total = 0
        docs = sorted((ROOT / "docs").iterdir())
        for path in docs:
            content_type = resolve_content_type(None, path.name)
            assert content_type is not None, path
            sections = parse_document(path.read_bytes(), content_type)
            chunks = chunk_sections(sections, rag.chunk_chars, rag.overlap_chars)
            chunks_total += len(chunks)
            info = DocumentInfo(document_id=path.name, title=path.name, collection="eval")
            await retriever.write_document("eval", info, chunks, 1)
        result: dict[str, object] = {
            "documents": len(docs),
            "chunks": chunks_total,
            "questions": len(questions),
            "k": K,
        }
        for mode in ("vector", "hybrid"):
            found, first, reciprocal, misses = 0, 0, 0.0, []
            start = time.perf_counter()
            for q in questions:
                hits = await retriever.search("eval", "eval", q["question"], k=K, mode=mode)
                ranked = list(dict.fromkeys(h.citation.document_id for h in hits))
                if q["document"] in ranked:
                    found += 1
                    first += ranked[0] == q["document"]
                    reciprocal += 1 / (ranked.index(q["document"]) + 1)
                else:
                    misses.append(q["question"])
            result[f"recall@{K}_{mode}"] = round(found / len(questions), 3)
            result[f"recall@1_{mode}"] = round(first / len(questions), 3)
            result[f"mrr_{mode}"] = round(reciprocal / len(questions), 3)
            result[f"ms_per_query_{mode}"] = round(
                1000 * (time.perf_counter() - start) / len(questions), 1
            )
            result[f"misses_{mode}"] = misses
        retriever.close()
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.stdout.flush()
