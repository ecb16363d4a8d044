"""The documents table from the ingest side: one short transaction per status change."""

from __future__ import annotations

from typing import Any

from cadenza_events import DocIngest
from cadenza_state import CollectionRecord, DocumentRecord, DocumentStatus, utcnow
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessions = async_sessionmaker[AsyncSession]
MAX_ERROR_CHARS = 2000


async def load_or_register(sessions: Sessions, tenant_id: str, doc: DocIngest) -> DocumentRecord:
    """The document's row; an upstream event may name a document no upload created."""
    async with sessions() as session:
        record = await session.get(DocumentRecord, doc.document_id)
        if record is not None:
            return record
    record = DocumentRecord(
        id=doc.document_id,
        tenant_id=tenant_id,
        collection=doc.collection,
        title=(doc.title or doc.object_ref.rsplit("/", 1)[-1])[:512],
        content_type=doc.content_type,
        object_ref=doc.object_ref,
        status=DocumentStatus.QUEUED.value,
        meta=dict(doc.metadata),
    )
    try:
        async with sessions() as session, session.begin():
            session.add(record)
    except IntegrityError:  # registered meanwhile (a redelivery racing its original)
        async with sessions() as session:
            existing = await session.get(DocumentRecord, doc.document_id)
            assert existing is not None
            return existing
    return record


async def collection_exists(sessions: Sessions, tenant_id: str, name: str) -> bool:
    async with sessions() as session:
        found = await session.scalar(
            select(CollectionRecord.id).where(
                CollectionRecord.tenant_id == tenant_id, CollectionRecord.name == name
            )
        )
        return found is not None


async def update(sessions: Sessions, document_id: str, **values: Any) -> None:
    async with sessions() as session, session.begin():
        record = await session.get(DocumentRecord, document_id, with_for_update=True)
        if record is None:  # deleted meanwhile: its delete event cleans up after us
            return
        for key, value in values.items():
            setattr(record, key, value)


async def mark_failed(sessions: Sessions, document_id: str, reason: str) -> None:
    await update(
        sessions, document_id, status=DocumentStatus.FAILED.value, error=reason[:MAX_ERROR_CHARS]
    )


async def mark_indexed(
    sessions: Sessions, document_id: str, *, content_hash: str, chunks: int, generation: int
) -> None:
    """Commit the new generation: from here on searches show it, and only it."""
    await update(
        sessions,
        document_id,
        status=DocumentStatus.INDEXED.value,
        error=None,
        content_hash=content_hash,
        indexed_hash=content_hash,
        chunk_count=chunks,
        generation=generation,
        indexed_at=utcnow(),
    )


async def forget(sessions: Sessions, tenant_id: str, document_id: str) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            delete(DocumentRecord).where(
                DocumentRecord.id == document_id, DocumentRecord.tenant_id == tenant_id
            )
        )
