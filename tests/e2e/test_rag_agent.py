"""Retrieval-augmented agents end to end: the handbook-qa bundle's documents are uploaded
through the gateway, ingested by rag-ingest (its own process, owning Qdrant's local mode
and serving searches to the gateway and the worker), and an agent on the embedded model
(`local:smollm2-135m`) answers a question with `rag_search`; the search ranks the right
document first, and the answer names a handbook document as its source.

Gateway, orchestrator, worker and rag-ingest are separate OS processes on real Kafka,
PostgreSQL, Redis and MinIO.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from cadenza_cli.bundles import deploy_bundle, load_bundle
from cadenza_cli.client import as_json, submit, wait_for_run
from cadenza_client import AsyncCadenza
from cadenza_state import ToolCallRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from support.cluster import Cluster

BUNDLE = Path(__file__).resolve().parents[2] / "examples" / "handbook-qa"
RUN_TIMEOUT_S = 420  # a 135M model on two shared cores: generous, a stuck run still fails
# Ingesting six documents and three agent runs take 60-90 s on a quiet 2-core machine: the
# suite's 120 s default cut it off whenever the machine was busy.
pytestmark = pytest.mark.timeout(600)

QUESTIONS = [
    ("How many days do customers have to return an item for a refund?", "refunds.md"),
    ("How long is the warranty on Brightwater Pro products?", "warranty.md"),
    ("What is the cut-off time for same-day shipping?", "shipping.md"),
]


async def rag_calls(db: AsyncEngine, run_id: str) -> list[dict[str, Any]]:
    query = (
        select(ToolCallRecord.status, ToolCallRecord.arguments, ToolCallRecord.result)
        .where(ToolCallRecord.run_id == run_id, ToolCallRecord.tool == "rag_search")
        .order_by(ToolCallRecord.call_index)
    )
    async with db.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


async def test_an_agent_answers_from_uploaded_documents_and_names_a_handbook_source(
    cluster: Cluster, api: httpx.AsyncClient, cadenza: AsyncCadenza, db: AsyncEngine
) -> None:
    cluster.start_rag_ingest()
    out = io.StringIO()
    body = await deploy_bundle(cadenza, load_bundle(BUNDLE), {}, out=out)  # waits for `indexed`
    documents = (await api.get("/v1/collections/handbook/documents")).json()["items"]
    assert {d["status"] for d in documents} == {"indexed"}, out.getvalue()
    titles = {d["id"]: d["title"] for d in documents}
    assert len(titles) == 6

    # The gateway searches through rag-ingest's search API (local Qdrant is its alone).
    found = await api.post("/v1/collections/handbook/search", json={"query": "SEV1", "k": 1})
    assert found.status_code == 200, found.text
    assert found.json()["hits"][0]["citation"]["title"] == "on-call-escalation.md"

    for question, expected in QUESTIONS:
        accepted = await submit(cadenza, {**body, "inputs": {"question": question}})
        async with asyncio.timeout(RUN_TIMEOUT_S):
            run = await wait_for_run(cadenza, accepted.id, interval_s=0.5, out=io.StringIO())
        done = as_json(run)
        assert done["status"] == "succeeded", done

        # The agent searched the handbook (its first turn must: tool_choice required) and
        # the worker's search, served by rag-ingest, ranked the right document first.
        calls = await rag_calls(db, done["id"])
        assert calls, "the agent never called rag_search"
        first = calls[0]
        assert first["status"] == "ok", first
        assert first["arguments"]["collection"] == "handbook"
        top = first["result"]["hits"][0]["citation"]
        assert (titles[top["document_id"]], top["title"]) == (expected, expected)

        # The answer names a handbook document as its source: the output schema's enum,
        # held end to end (constrained decoding, the worker's check, the workflow's output
        # mapping). WHICH title a 135M model copies is its own choice and not stable:
        # greedy decoding varies with the random document ids in the tool result it reads,
        # and CI runs saw it cite the second passage, and once a title no passage had. The
        # exact citation is the eval suite's concern, on a cassette.
        output = done["output"]
        assert output["question"] == question
        assert output["source"] in set(titles.values()), output
        assert output["answer"].strip()
