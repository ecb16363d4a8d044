"""`rag_search`: an agent (or a tool task) searches a document collection of its tenant.

Returns ``{"hits": [{text, score, citation: {document_id, title, collection, position, page,
heading}, metadata}]}`` — the same shape as ``POST /v1/collections/{c}/search`` — so an
answer can cite ``title`` (and page) of the passages it used.

Vectors live where ``CADENZA_RETRIEVAL_*`` says (a Qdrant server, or the local folder —
local mode serves one process, e.g. `cadenza dev`). The model and the store are opened on
the first call, not when the worker starts.
"""

from __future__ import annotations

import threading
from typing import Any

from cadenza_events import NonRetryableError
from cadenza_retrieval import (
    MAX_K,
    MAX_QUERY_CHARS,
    RetrievalSettings,
    Retriever,
    SearchMode,
    visible_generations,
)
from cadenza_state import CollectionRecord
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ..errors import parse_params
from .base import ToolContext


class RagSearchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str = Field(
        min_length=1, max_length=64, description="Name of the document collection to search."
    )
    query: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS, description="What to look for, in words."
    )
    k: int = Field(default=5, ge=1, le=MAX_K, description="How many passages to return.")
    mode: SearchMode | None = Field(
        default=None, description="`vector` or `hybrid` ranking (default: the server's)."
    )


class UnknownCollectionError(NonRetryableError):
    code = "unknown_collection"


class RagSearchTool:
    """Search a document collection; each hit has a citation (document title, page,
    position) to quote in the answer."""

    name = "rag_search"
    side_effects = False
    params_model = RagSearchParams
    description = (
        "Search the tenant's document collection for passages relevant to a question. "
        "Returns hits with text, score and a citation (document_id, title, page, position); "
        "cite the title (and page) of every passage you use."
    )

    def __init__(self, settings: RetrievalSettings | None = None) -> None:
        self._settings = settings
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    @property
    def retriever(self) -> Retriever:
        with self._lock:
            if self._retriever is None:
                self._retriever = Retriever(self._settings)
            return self._retriever

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        p: RagSearchParams = parse_params(RagSearchParams, params, self.name)
        generations = None
        if ctx.sessions is not None:
            async with ctx.sessions() as session:
                known = await session.scalar(
                    select(CollectionRecord.id).where(
                        CollectionRecord.tenant_id == ctx.tenant_id,
                        CollectionRecord.name == p.collection,
                    )
                )
            if known is None:
                raise UnknownCollectionError(
                    f"rag_search: no collection named {p.collection!r} for this tenant"
                )
            generations = visible_generations(ctx.sessions, ctx.tenant_id)
        hits = await self.retriever.search(
            ctx.tenant_id, p.collection, p.query, k=p.k, mode=p.mode, generations=generations
        )
        return {"hits": [hit.model_dump(mode="json") for hit in hits]}

    async def aclose(self) -> None:
        if self._retriever is not None:
            self._retriever.close()
            self._retriever = None
