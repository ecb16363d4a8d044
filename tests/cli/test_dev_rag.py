"""`cadenza dev` runs rag-ingest too: an upload is indexed in the same process, and the
gateway's search and a workflow's `rag_search` read the same local Qdrant folder."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cadenza_cli.client import wait_for_run
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_client import AsyncCadenza
from cadenza_runtime import open_resources
from support import assert_eventually

pytestmark = pytest.mark.unit

WARRANTY = b"# Warranty\n\nEvery Nimbus kettle carries a three-year warranty from delivery."
RETURNS = b"# Returns\n\nUnopened items can be returned within 30 days for a full refund."


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    resources = await open_resources(*dev_settings(tmp_path))
    stack = DevStack(resources, port=0, data_dir=tmp_path)
    await stack.start()
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
            yield client
    finally:
        await stack.stop()
    assert (tmp_path / "qdrant").is_dir()  # vectors live in the dev data folder


async def test_dev_indexes_uploads_and_workflows_search_them(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/collections", json={"name": "kb"})).status_code == 201
    ids = []
    for name, body in (("warranty.md", WARRANTY), ("returns.md", RETURNS)):
        sent = await api.post(
            "/v1/collections/kb/documents", files={"file": (name, body, "text/markdown")}
        )
        assert sent.status_code == 202, sent.text
        ids.append(sent.json()["id"])
    for doc_id in ids:

        async def indexed(doc_id: str = doc_id) -> bool:
            got = await api.get(f"/v1/collections/kb/documents/{doc_id}")
            return bool(got.json()["status"] == "indexed")

        await assert_eventually(indexed, timeout=60)

    found = await api.post("/v1/collections/kb/search", json={"query": "kettle warranty", "k": 1})
    assert found.status_code == 200, found.text
    assert found.json()["hits"][0]["citation"]["title"] == "warranty.md"

    workflow = {
        "name": "kb-lookup",
        "inputs": {"question": {"type": "string"}},
        "tasks": [
            {
                "id": "lookup",
                "kind": "tool",
                "tool": "rag_search",
                "with": {"collection": "kb", "query": "${{ inputs.question }}", "k": 1},
            }
        ],
        "output": {"hits": "${{ tasks.lookup.output.hits }}"},
    }
    accepted = await api.post(
        "/v1/runs", json={"spec": workflow, "inputs": {"question": "can I send it back?"}}
    )
    assert accepted.status_code == 201, accepted.text
    async with asyncio.timeout(60), AsyncCadenza(str(api.base_url), api_key="") as cadenza:
        run_id = accepted.json()["id"]
        done = await wait_for_run(cadenza, run_id, interval_s=0.1, out=io.StringIO())
    assert done.status == "succeeded", done
    (hit,) = done.output["hits"]
    assert hit["citation"]["document_id"] == ids[1]
    assert hit["citation"]["title"] == "returns.md"
