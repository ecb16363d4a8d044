"""Data functions for reference datasets (``reference_records``); the caller owns the
transaction. A dataset exists while it has at least one record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cadenza_state import ReferenceRecord, utcnow
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Rows per INSERT statement: 4 bound parameters each stays far below PostgreSQL's 32767.
_UPSERT_CHUNK = 500


@dataclass(frozen=True)
class DatasetSummary:
    dataset: str
    records: int
    updated_at: datetime


async def upsert_records(
    *,
    session: AsyncSession,
    tenant_id: str,
    dataset: str,
    records: Sequence[tuple[str, Any]],
) -> None:
    """Insert or replace ``(key, data)`` records of one dataset (keys unique in ``records``)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    now = utcnow()
    for start in range(0, len(records), _UPSERT_CHUNK):
        rows = [
            {
                "tenant_id": tenant_id,
                "dataset": dataset,
                "key": key,
                "data": data,
                "updated_at": now,
            }
            for key, data in records[start : start + _UPSERT_CHUNK]
        ]
        stmt = dialect.insert(ReferenceRecord).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "dataset", "key"],
            set_={"data": stmt.excluded.data, "updated_at": stmt.excluded.updated_at},
        )
        await session.execute(stmt)


async def delete_records_except(
    *, session: AsyncSession, tenant_id: str, dataset: str, keep: Sequence[str]
) -> int:
    """Delete the dataset's records whose key is not in ``keep``; returns how many."""
    stmt = delete(ReferenceRecord).where(
        ReferenceRecord.tenant_id == tenant_id, ReferenceRecord.dataset == dataset
    )
    if keep:
        stmt = stmt.where(ReferenceRecord.key.not_in(list(keep)))
    result = await session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_records(*, session: AsyncSession, tenant_id: str, dataset: str) -> int:
    stmt = select(func.count()).where(
        ReferenceRecord.tenant_id == tenant_id, ReferenceRecord.dataset == dataset
    )
    return int(await session.scalar(stmt) or 0)


async def list_datasets(*, session: AsyncSession, tenant_id: str) -> list[DatasetSummary]:
    """Every dataset of the tenant with its record count and last change, by name."""
    stmt = (
        select(
            ReferenceRecord.dataset,
            func.count().label("records"),
            func.max(ReferenceRecord.updated_at).label("updated_at"),
        )
        .where(ReferenceRecord.tenant_id == tenant_id)
        .group_by(ReferenceRecord.dataset)
        .order_by(ReferenceRecord.dataset)
    )
    rows = (await session.execute(stmt)).all()
    return [DatasetSummary(row.dataset, int(row.records), row.updated_at) for row in rows]


async def get_record(
    *, session: AsyncSession, tenant_id: str, dataset: str, key: str
) -> ReferenceRecord | None:
    return await session.get(ReferenceRecord, (tenant_id, dataset, key))


async def delete_dataset(*, session: AsyncSession, tenant_id: str, dataset: str) -> int:
    """Delete every record of the dataset; returns how many there were."""
    return await delete_records_except(
        session=session, tenant_id=tenant_id, dataset=dataset, keep=()
    )
