"""Data functions for collections and their documents; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cadenza_events import DocIngest, Envelope, Topic, TopicRegistry
from cadenza_runtime import stage_event
from cadenza_state import CollectionRecord, DocumentRecord, DocumentStatus
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .runs import EVENT_SOURCE


async def get_collection(
    *, session: AsyncSession, tenant_id: str, name: str
) -> CollectionRecord | None:
    return await session.scalar(
        select(CollectionRecord).where(
            CollectionRecord.tenant_id == tenant_id, CollectionRecord.name == name
        )
    )


async def create_collection(
    *, session: AsyncSession, tenant_id: str, name: str, description: str | None
) -> CollectionRecord:
    """Flushes at once: a duplicate name raises IntegrityError inside the caller's block."""
    record = CollectionRecord(tenant_id=tenant_id, name=name, description=description)
    session.add(record)
    await session.flush()
    return record


async def list_collections(*, session: AsyncSession, tenant_id: str) -> list[CollectionRecord]:
    stmt = (
        select(CollectionRecord)
        .where(CollectionRecord.tenant_id == tenant_id)
        .order_by(CollectionRecord.name)
    )
    return list((await session.scalars(stmt)).all())


async def count_documents(
    *, session: AsyncSession, tenant_id: str, collections: list[str]
) -> dict[str, int]:
    rows = await session.execute(
        select(DocumentRecord.collection, func.count())
        .where(DocumentRecord.tenant_id == tenant_id, DocumentRecord.collection.in_(collections))
        .group_by(DocumentRecord.collection)
    )
    return {name: int(n) for name, n in rows}


async def get_document(
    *,
    session: AsyncSession,
    tenant_id: str,
    collection: str,
    document_id: str,
    for_update: bool = False,
) -> DocumentRecord | None:
    stmt = select(DocumentRecord).where(
        DocumentRecord.id == document_id,
        DocumentRecord.tenant_id == tenant_id,
        DocumentRecord.collection == collection,
    )
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def find_by_content(
    *, session: AsyncSession, tenant_id: str, collection: str, content_hash: str
) -> DocumentRecord | None:
    """A document of the collection with exactly this content (re-uploads are no-ops)."""
    return await session.scalar(
        select(DocumentRecord)
        .where(
            DocumentRecord.tenant_id == tenant_id,
            DocumentRecord.collection == collection,
            DocumentRecord.content_hash == content_hash,
        )
        .limit(1)
    )


async def list_documents(
    *,
    session: AsyncSession,
    tenant_id: str,
    collection: str,
    after: tuple[datetime, str] | None,
    status: str | None,
    limit: int,
) -> list[DocumentRecord]:
    """Newest first, keyset-paginated on (created_at, id)."""
    stmt = select(DocumentRecord).where(
        DocumentRecord.tenant_id == tenant_id, DocumentRecord.collection == collection
    )
    if status is not None:
        stmt = stmt.where(DocumentRecord.status == status)
    if after is not None:
        at, ident = after
        stmt = stmt.where(
            or_(
                DocumentRecord.created_at < at,
                and_(DocumentRecord.created_at == at, DocumentRecord.id < ident),
            )
        )
    stmt = stmt.order_by(DocumentRecord.created_at.desc(), DocumentRecord.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


def _event(tenant_id: str, doc: DocIngest) -> Envelope[Any]:
    return Envelope(payload=doc, source=EVENT_SOURCE, tenant_id=tenant_id, subject=doc.document_id)


async def queue_ingest(
    *, session: AsyncSession, registry: TopicRegistry, record: DocumentRecord
) -> None:
    """Mark the document queued and stage its ``doc.ingest`` (published if the caller
    commits)."""
    record.status = DocumentStatus.QUEUED.value
    record.error = None
    doc = DocIngest(
        document_id=record.id,
        object_ref=record.object_ref,
        content_type=record.content_type,
        collection=record.collection,
        metadata=record.meta,
        title=record.title,
    )
    await stage_event(session, registry, Topic.DOC_INGEST, _event(record.tenant_id, doc))


async def delete_document(
    *, session: AsyncSession, registry: TopicRegistry, record: DocumentRecord
) -> None:
    """Remove the row (searches stop showing the document at commit) and stage the event
    that makes rag-ingest delete its vectors, ordered after any ingest still queued."""
    doc = DocIngest(
        document_id=record.id,
        object_ref=record.object_ref,
        collection=record.collection,
        action="delete",
    )
    await session.delete(record)
    await stage_event(session, registry, Topic.DOC_INGEST, _event(record.tenant_id, doc))
