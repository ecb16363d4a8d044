"""Collections and documents in the API: request/response models, problems, and the
process's searcher (in process, or rag-ingest's search API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from cadenza_retrieval import (
    Searcher,
    SearchQuery,
    SearchResults,
    SearchUnavailable,
    open_searcher,
)
from cadenza_state import CollectionRecord, DocumentRecord
from fastapi import Depends, Request
from pydantic import BaseModel, Field

from .problems import InvalidRequest, ProblemError

COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DOCUMENT_UPLOAD_PATH = r"/v1/collections/[^/]+/documents(/[^/]+)?"
"""Paths whose bodies are documents: limited by `max_document_bytes`, not `max_body_bytes`."""


class CollectionNotFound(ProblemError):
    status, slug, title = 404, "collection-not-found", "Collection not found"


class DocumentNotFound(ProblemError):
    status, slug, title = 404, "document-not-found", "Document not found"


class SearchServiceUnavailable(ProblemError):
    status, slug, title = 503, "search-unavailable", "Search service unavailable"


class CollectionExists(ProblemError):
    status, slug, title = 409, "collection-exists", "Collection already exists"


class InvalidDocument(ProblemError):
    status, slug, title = 422, "invalid-document", "Invalid document"


class CollectionCreate(BaseModel):
    name: str = Field(
        pattern=COLLECTION_NAME_PATTERN,
        description="Lower-case letters, digits, `_` and `-`; up to 64 characters.",
    )
    description: str | None = Field(default=None, max_length=1024)


class CollectionPublic(BaseModel):
    name: str
    description: str | None
    documents: int = Field(default=0, description="How many documents it holds.")
    created_at: datetime

    @classmethod
    def from_record(cls, record: CollectionRecord, documents: int = 0) -> CollectionPublic:
        return cls(
            name=record.name,
            description=record.description,
            documents=documents,
            created_at=record.created_at,
        )


class CollectionsPublic(BaseModel):
    items: list[CollectionPublic]


class DocumentPublic(BaseModel):
    id: str
    collection: str
    title: str
    content_type: str
    size_bytes: int | None
    content_hash: str | None = Field(description="sha256 of the latest content received.")
    status: str = Field(description="queued | processing | indexed | failed")
    error: str | None = Field(description="Why ingestion failed (status `failed`).")
    chunk_count: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime | None

    @classmethod
    def from_record(cls, r: DocumentRecord) -> DocumentPublic:
        return cls(
            id=r.id,
            collection=r.collection,
            title=r.title,
            content_type=r.content_type,
            size_bytes=r.size_bytes,
            content_hash=r.content_hash,
            status=r.status,
            error=r.error,
            chunk_count=r.chunk_count,
            metadata=r.meta or {},
            created_at=r.created_at,
            updated_at=r.updated_at,
            indexed_at=r.indexed_at,
        )


class DocumentsPublic(BaseModel):
    items: list[DocumentPublic]
    next_cursor: str | None = None


class SearchRequest(SearchQuery):
    """`POST /v1/collections/{c}/search`."""


class SearchResponse(SearchResults):
    pass


def get_searcher(request: Request) -> Searcher:
    """The app's searcher (``create_app(searcher=...)``), else one opened on first use from
    ``CADENZA_RETRIEVAL_*``: a gateway that never searches never opens the vector store
    nor loads the model, and with ``search_url`` it never does (rag-ingest searches)."""
    state = request.app.state
    if state.searcher is None:
        state.searcher = open_searcher()
        state.owns_searcher = True
    return cast(Searcher, state.searcher)


SearcherDep = Annotated[Searcher, Depends(get_searcher)]


def search_problem(exc: Exception) -> ProblemError:
    """What a failed search means to an API caller."""
    if isinstance(exc, SearchUnavailable):
        return SearchServiceUnavailable(str(exc))
    return InvalidRequest(str(exc))
