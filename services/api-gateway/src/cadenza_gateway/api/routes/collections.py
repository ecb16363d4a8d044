"""/v1/collections: collections of documents for retrieval — upload, status, delete, search.

An upload is streamed to the object store, recorded as `queued` with its `doc.ingest`
event in one outbox transaction, and answered 202; rag-ingest does the rest.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from cadenza_retrieval import (
    SearchUnavailable,
    UnknownCollection,
    resolve_content_type,
    visible_generations,
)
from cadenza_state import DocumentRecord, DocumentStatus
from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile
from opentelemetry import trace
from sqlalchemy.exc import IntegrityError

from ... import crud
from ...auth import CanReadDocuments, CanWriteDocuments
from ...body_values import describe, unstorable_values
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_time_id_cursor, encode_cursor
from ...problems import FieldProblem, PayloadTooLarge, UnsupportedMediaType, problem_responses
from ...query_types import INTEGER_TEXT
from ...rag import (
    COLLECTION_NAME_PATTERN,
    CollectionCreate,
    CollectionExists,
    CollectionNotFound,
    CollectionPublic,
    CollectionsPublic,
    DocumentNotFound,
    DocumentPublic,
    DocumentsPublic,
    InvalidDocument,
    SearcherDep,
    SearchRequest,
    SearchResponse,
    search_problem,
)
from ...uploads import measure, store_upload
from ..deps import ResourcesDep, SessionDep, SettingsDep, require_json

router = APIRouter(prefix="/v1/collections", tags=["collections"], responses=problem_responses(422))
tracer = trace.get_tracer("cadenza.gateway")

CollectionPath = Annotated[str, Path(pattern=COLLECTION_NAME_PATTERN, description="Collection.")]
DocumentPath = Annotated[str, Path(max_length=64, description="Document id.")]
MAX_METADATA_BYTES = 16 * 1024


@router.post(
    "",
    status_code=201,
    response_model=CollectionPublic,
    summary="Create a collection",
    responses=problem_responses(409, 415, 422),
    dependencies=[Depends(require_json)],
)
async def create_collection(
    body: CollectionCreate, session: SessionDep, tenant: CanWriteDocuments
) -> CollectionPublic:
    try:
        async with session.begin():
            record = await crud.create_collection(
                session=session, tenant_id=tenant, name=body.name, description=body.description
            )
            crud.record_audit(
                session=session,
                tenant_id=tenant,
                action="collection.created",
                subject=f"collection:{body.name}",
            )
    except IntegrityError:
        raise CollectionExists(f"collection {body.name!r} already exists") from None
    return CollectionPublic.from_record(record)


@router.get("", response_model=CollectionsPublic, summary="List collections")
async def list_collections(session: SessionDep, tenant: CanReadDocuments) -> CollectionsPublic:
    records = await crud.list_collections(session=session, tenant_id=tenant)
    counts = await crud.count_documents(
        session=session, tenant_id=tenant, collections=[r.name for r in records]
    )
    return CollectionsPublic(
        items=[CollectionPublic.from_record(r, counts.get(r.name, 0)) for r in records]
    )


@router.get(
    "/{collection}",
    response_model=CollectionPublic,
    summary="Get a collection",
    responses=problem_responses(404),
)
async def get_collection(
    collection: CollectionPath, session: SessionDep, tenant: CanReadDocuments
) -> CollectionPublic:
    record = await _collection(session, tenant, collection)
    counts = await crud.count_documents(session=session, tenant_id=tenant, collections=[collection])
    return CollectionPublic.from_record(record, counts.get(collection, 0))


async def _collection(session: Any, tenant: str, name: str) -> Any:
    record = await crud.get_collection(session=session, tenant_id=tenant, name=name)
    if record is None:
        raise CollectionNotFound(f"no collection named {name!r}; create it first")
    return record


def _object_key(tenant: str, collection: str, document_id: str) -> str:
    return f"documents/{tenant}/{collection}/{document_id}"


def _field_problem(cls: Any, field: str, code: str, message: str, **extra: Any) -> Any:
    return cls(
        f"field {field}: {message}",
        errors=[FieldProblem(field=field, code=code, message=f"field {field}: {message}")],
        **extra,
    )


def _parse_metadata(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    if len(raw.encode()) > MAX_METADATA_BYTES:
        raise _field_problem(
            InvalidDocument, "metadata", "too_large", f"larger than {MAX_METADATA_BYTES} bytes"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _field_problem(
            InvalidDocument, "metadata", "invalid_json", f"not JSON ({exc.msg})"
        ) from None
    if not isinstance(value, dict):
        raise _field_problem(InvalidDocument, "metadata", "invalid_field", "must be a JSON object")
    # A form field, so the JSON body check (body_values) has not seen it.
    for field, code in unstorable_values(value, "metadata"):
        raise _field_problem(InvalidDocument, field, code, describe(code))
    return value


async def _receive(
    file: UploadFile, settings: Any, declared_type: str | None
) -> tuple[str, int, str]:
    """Check what can be known at upload: type, emptiness, size, a PDF's signature.
    Returns (content type, size, sha256)."""
    content_type = resolve_content_type(declared_type or file.content_type, file.filename)
    if content_type is None:
        raise UnsupportedMediaType(
            f"field file: cannot ingest {file.content_type or 'an untyped file'!r} "
            f"({file.filename!r}); send txt, md, html, json or pdf",
            accepted=sorted(
                {"text/plain", "text/markdown", "text/html", "application/json", "application/pdf"}
            ),
        )
    limit = settings.max_document_bytes
    measured = await measure(file.file, limit)
    if measured is None:
        raise _field_problem(
            PayloadTooLarge, "file", "too_large", f"larger than {limit} bytes", limit_bytes=limit
        )
    if measured.size == 0:
        raise _field_problem(InvalidDocument, "file", "empty_document", "the file is empty")
    if content_type == "application/pdf" and not measured.head.lstrip().startswith(b"%PDF-"):
        raise _field_problem(InvalidDocument, "file", "corrupt_pdf", "not a PDF (no %PDF header)")
    return content_type, measured.size, measured.sha256


@router.post(
    "/{collection}/documents",
    status_code=202,
    response_model=DocumentPublic,
    summary="Upload a document (multipart) for ingestion",
    responses={
        200: {"model": DocumentPublic, "description": "The same content is already there."},
        **problem_responses(404, 413, 415, 422),
    },
)
async def upload_document(
    collection: CollectionPath,
    file: Annotated[UploadFile, File(description="The document: txt, md, html, json or pdf.")],
    response: Response,
    session: SessionDep,
    tenant: CanWriteDocuments,
    settings: SettingsDep,
    resources: ResourcesDep,
    title: Annotated[str | None, Form(max_length=512, description="Default: file name.")] = None,
    metadata: Annotated[
        str | None, Form(description="A JSON object stored with the document (filters).")
    ] = None,
    content_type: Annotated[
        str | None, Form(description="Overrides the file part's Content-Type.")
    ] = None,
) -> DocumentPublic:
    """Answers 202 with the `queued` document; poll `GET .../documents/{id}`. Identical
    content already in the collection answers 200 with that document instead."""
    meta = _parse_metadata(metadata)
    async with session.begin():
        await _collection(session, tenant, collection)
    media, size, digest = await _receive(file, settings, content_type)
    async with session.begin():
        existing = await crud.find_by_content(
            session=session, tenant_id=tenant, collection=collection, content_hash=digest
        )
    if existing is not None:
        response.status_code = 200
        return DocumentPublic.from_record(existing)
    document_id = str(uuid.uuid4())
    key = _object_key(tenant, collection, document_id)
    with tracer.start_as_current_span("cadenza.gateway.store_upload", attributes={"size": size}):
        await store_upload(resources.objects, key, file.file, size, media)
    record = DocumentRecord(
        id=document_id,
        tenant_id=tenant,
        collection=collection,
        title=(title or file.filename or document_id)[:512],
        content_type=media,
        size_bytes=size,
        object_ref=key,
        content_hash=digest,
        status=DocumentStatus.QUEUED.value,
        chunk_count=0,
        meta=meta,
    )
    async with session.begin():
        session.add(record)
        await session.flush()
        await crud.queue_ingest(session=session, registry=resources.registry, record=record)
    response.headers["Location"] = (
        f"{settings.public_url}/v1/collections/{collection}/documents/{document_id}"
    )
    return DocumentPublic.from_record(record)


@router.put(
    "/{collection}/documents/{document_id}",
    status_code=202,
    response_model=DocumentPublic,
    summary="Replace a document's content",
    responses=problem_responses(404, 413, 415, 422),
)
async def replace_document(
    collection: CollectionPath,
    document_id: DocumentPath,
    file: Annotated[UploadFile, File(description="The new content.")],
    session: SessionDep,
    tenant: CanWriteDocuments,
    settings: SettingsDep,
    resources: ResourcesDep,
    content_type: Annotated[str | None, Form()] = None,
) -> DocumentPublic:
    """Searches keep showing the old version until the new one is indexed, then only the
    new one. The same content again re-embeds nothing."""
    async with session.begin():
        record = await _document(session, tenant, collection, document_id)
    media, size, digest = await _receive(file, settings, content_type)
    await store_upload(resources.objects, record.object_ref, file.file, size, media)
    async with session.begin():
        locked = await _document(session, tenant, collection, document_id, for_update=True)
        locked.content_type, locked.size_bytes, locked.content_hash = media, size, digest
        await crud.queue_ingest(session=session, registry=resources.registry, record=locked)
    return DocumentPublic.from_record(locked)


async def _document(
    session: Any, tenant: str, collection: str, document_id: str, *, for_update: bool = False
) -> DocumentRecord:
    record = await crud.get_document(
        session=session,
        tenant_id=tenant,
        collection=collection,
        document_id=document_id,
        for_update=for_update,
    )
    if record is None:
        raise DocumentNotFound(f"no document {document_id!r} in collection {collection!r}")
    return record


@router.get(
    "/{collection}/documents/{document_id}",
    response_model=DocumentPublic,
    summary="Get a document and its ingestion status",
    responses=problem_responses(404),
)
async def get_document(
    collection: CollectionPath,
    document_id: DocumentPath,
    session: SessionDep,
    tenant: CanReadDocuments,
) -> DocumentPublic:
    return DocumentPublic.from_record(await _document(session, tenant, collection, document_id))


@router.get(
    "/{collection}/documents",
    response_model=DocumentsPublic,
    summary="List a collection's documents (newest first)",
    responses=problem_responses(400, 404, 422),
)
async def list_documents(
    collection: CollectionPath,
    session: SessionDep,
    tenant: CanReadDocuments,
    status: Annotated[
        DocumentStatus | None, Query(description="Only documents in this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE), INTEGER_TEXT] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
) -> DocumentsPublic:
    await _collection(session, tenant, collection)
    after = decode_time_id_cursor(cursor) if cursor else None
    records = await crud.list_documents(
        session=session,
        tenant_id=tenant,
        collection=collection,
        after=after,
        status=status.value if status else None,
        limit=limit + 1,
    )
    page = records[:limit]
    more = len(records) > limit
    return DocumentsPublic(
        items=[DocumentPublic.from_record(r) for r in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.delete(
    "/{collection}/documents/{document_id}",
    status_code=204,
    summary="Delete a document, its chunks and its object",
    responses=problem_responses(404),
)
async def delete_document(
    collection: CollectionPath,
    document_id: DocumentPath,
    session: SessionDep,
    tenant: CanWriteDocuments,
    resources: ResourcesDep,
) -> Response:
    """Searches stop showing it at once; rag-ingest removes its vectors shortly after."""
    async with session.begin():
        record = await _document(session, tenant, collection, document_id, for_update=True)
        object_ref = record.object_ref
        await crud.delete_document(session=session, registry=resources.registry, record=record)
        crud.record_audit(
            session=session,
            tenant_id=tenant,
            action="document.deleted",
            subject=f"document:{collection}/{document_id}",
        )
    await resources.objects.delete(object_ref)
    return Response(status_code=204)


@router.post(
    "/{collection}/search",
    response_model=SearchResponse,
    summary="Search a collection",
    responses=problem_responses(404, 415, 422, 503),
    dependencies=[Depends(require_json)],
)
async def search(
    collection: CollectionPath,
    body: SearchRequest,
    session: SessionDep,
    tenant: CanReadDocuments,
    resources: ResourcesDep,
    searcher: SearcherDep,
) -> SearchResponse:
    """The `k` chunks most relevant to `query`, each with its score and citation."""
    async with session.begin():  # ended before the search: SQLite allows one writer-ish txn
        await _collection(session, tenant, collection)
    try:
        hits = await searcher.search(
            tenant,
            collection,
            body.query,
            k=body.k,
            mode=body.mode,
            filters=body.filters,
            generations=visible_generations(resources.sessions, tenant),
        )
    except UnknownCollection:
        raise CollectionNotFound(f"no collection named {collection!r}") from None
    except (SearchUnavailable, ValueError) as exc:
        raise search_problem(exc) from None
    return SearchResponse(hits=hits)
