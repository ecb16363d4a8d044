"""Collections and documents in the API: request/response models, problems, and the
process's retriever (searches embed the query here)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from cadenza_retrieval import MAX_K, MAX_QUERY_CHARS, Retriever, SearchHit, SearchMode
from cadenza_state import CollectionRecord, DocumentRecord
from fastapi import Depends, Request
from pydantic import BaseModel, Field

from .problems import ProblemError

COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
DOCUMENT_UPLOAD_PATH = r"/v1/collections/[^/]+/documents(/[^/]+)?"
"""Paths whose bodies are documents: limited by `max_document_bytes`, not `max_body_bytes`."""


class CollectionNotFound(ProblemError):
    status, slug, title = 404, "collection-not-found", "Collection not found"


class DocumentNotFound(ProblemError):
    status, slug, title = 404, "document-not-found", "Document not found"


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


FilterScalar = str | int | float | bool


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=5, ge=1, le=MAX_K, description="How many chunks to return.")
    mode: SearchMode | None = Field(
        default=None, description="`vector` or `hybrid` (default: the server's setting)."
    )
    filters: dict[str, FilterScalar | list[str] | list[int]] = Field(
        default_factory=dict,
        description="Equality filters: `document_id`, `page`, or a key of the documents' "
        "metadata; a list matches any of its values.",
    )


class SearchResponse(BaseModel):
    hits: list[SearchHit]


def get_retriever(request: Request) -> Retriever:
    """The app's retriever, opened on first use (a gateway that never searches never opens
    the vector store nor loads the model)."""
    state = request.app.state
    retriever = getattr(state, "retriever", None)
    if retriever is None:
        retriever = state.retriever = Retriever()
    return cast(Retriever, retriever)


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]
