"""The agents' `rag_search` tool: same hit shape as the API, tenant-scoped, clear errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cadenza_events import DocIngest, Envelope, NonRetryableError, Topic
from cadenza_rag import RagIngest
from cadenza_retrieval import Retriever
from cadenza_runtime import Resources
from cadenza_state import CollectionRecord, DocumentRecord
from cadenza_worker.tools import RagSearchTool, ToolContext, agent_tool_schema
from support import assert_eventually

pytestmark = pytest.mark.parametrize("stack", ["unit"], indirect=True)


async def test_rag_search_returns_cited_hits_for_the_tasks_tenant(
    resources: Resources,
    ingest: RagIngest,
    retriever: Retriever,
    tool_context: Callable[..., ToolContext],
) -> None:
    async with resources.sessions() as session, session.begin():
        session.add(CollectionRecord(tenant_id="acme", name="kb"))
    await resources.objects.put("up/w.md", b"# Warranty\n\nElectronics carry a two-year warranty.")
    doc = DocIngest(
        document_id="w",
        object_ref="up/w.md",
        content_type="text/markdown",
        collection="kb",
        title="warranty.md",
    )
    await resources.publisher.publish(
        Topic.DOC_INGEST, Envelope(payload=doc, source="/t", tenant_id="acme", subject="w")
    )

    async def indexed() -> bool:
        async with resources.sessions() as session:
            record = await session.get(DocumentRecord, "w")
        return record is not None and record.status == "indexed"

    await assert_eventually(indexed, timeout=30)
    tool = RagSearchTool(searcher=retriever)  # the test's store folder
    result = await tool(
        {"collection": "kb", "query": "how long is the warranty", "k": 2}, tool_context()
    )
    (hit,) = result["hits"]
    assert hit["citation"] == {
        "document_id": "w",
        "title": "warranty.md",
        "collection": "kb",
        "position": 0,
        "page": None,
        "heading": "Warranty",
    }
    assert "two-year" in hit["text"]
    with pytest.raises(NonRetryableError, match="no collection named 'kb'"):
        await tool({"collection": "kb", "query": "warranty"}, tool_context(tenant="other"))
    with pytest.raises(NonRetryableError, match="k"):
        await tool({"collection": "kb", "query": "warranty", "k": 0}, tool_context())
    schema = agent_tool_schema(tool)
    assert schema is not None
    assert set(schema["parameters"]["required"]) == {"collection", "query"}
