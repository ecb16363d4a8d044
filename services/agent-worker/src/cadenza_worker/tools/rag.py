"""`rag_search`: an agent (or a tool task) searches a document collection of its tenant.

Returns ``{"hits": [{text, score, citation: {document_id, title, collection, position, page,
heading}, metadata}]}`` — the same shape as ``POST /v1/collections/{c}/search`` — so an
answer can cite ``title`` (and page) of the passages it used.

It searches in process on the store ``CADENZA_RETRIEVAL_*`` names (a Qdrant server, or the
local folder, which serves one process, e.g. `cadenza dev`), or through rag-ingest's search
API when ``CADENZA_RETRIEVAL_SEARCH_URL`` is set. The searcher is opened on the first call,
not when the worker starts.
"""

from __future__ import annotations

import threading
from typing import Any

from cadenza_events import NonRetryableError, RetryableError
from cadenza_retrieval import (
    MAX_K,
    MAX_QUERY_CHARS,
    RetrievalSettings,
    Searcher,
    SearchMode,
    SearchUnavailable,
    UnknownCollection,
    open_searcher,
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


class SearchUnavailableError(RetryableError):
    """The search service is down or failing: the task's retries may outlast it."""

    code = "search_unavailable"


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

    def __init__(
        self, settings: RetrievalSettings | None = None, *, searcher: Searcher | None = None
    ) -> None:
        """``searcher``: one shared with the process's other services (``cadenza dev``);
        it is then not closed by :meth:`aclose`."""
        self._settings = settings
        self._searcher = searcher
        self._owns_searcher = searcher is None
        self._lock = threading.Lock()

    @property
    def searcher(self) -> Searcher:
        with self._lock:
            if self._searcher is None:
                self._searcher = open_searcher(self._settings)
            return self._searcher

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
        try:
            hits = await self.searcher.search(
                ctx.tenant_id, p.collection, p.query, k=p.k, mode=p.mode, generations=generations
            )
        except UnknownCollection as exc:
            raise UnknownCollectionError(f"rag_search: {exc}") from None
        except SearchUnavailable as exc:
            raise SearchUnavailableError(f"rag_search: {exc}") from exc
        # Scores to 4 places: the last bits of a similarity vary with how the embedder batched
        # the chunks, and a prompt that changes in the 16th digit defeats cassette replay
        # (and prompt caches) for no information the model could use.
        return {
            "hits": [{**hit.model_dump(mode="json"), "score": round(hit.score, 4)} for hit in hits]
        }

    async def aclose(self) -> None:
        if self._searcher is not None and self._owns_searcher:
            await self._searcher.aclose()
            self._searcher = None
