"""The documents table as the source of truth for what searches may show."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from cadenza_state import DocumentRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

GenerationLookup = Callable[[Collection[str]], Awaitable[dict[str, int]]]


def visible_generations(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str
) -> GenerationLookup:
    """A lookup of the committed vector generation of the tenant's documents. A document
    whose new version failed keeps its last good generation: searches still show it."""

    async def lookup(document_ids: Collection[str]) -> dict[str, int]:
        if not document_ids:
            return {}
        async with sessions() as session:
            rows = await session.execute(
                select(DocumentRecord.id, DocumentRecord.generation).where(
                    DocumentRecord.tenant_id == tenant_id,
                    DocumentRecord.id.in_(list(document_ids)),
                    DocumentRecord.generation.is_not(None),
                )
            )
            return {doc_id: int(gen) for doc_id, gen in rows if gen is not None}

    return lookup
