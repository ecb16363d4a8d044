"""Bulk inserts: binary COPY on PostgreSQL stores exactly what an INSERT stores, and many
outbox rows keep the order they were given (their ids are the publication order)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cadenza_state import OutboxMessage, RunRecord, TaskRecord, bulk, claim_unpublished, insert_many
from cadenza_state.outbox import insert_outbox
from sqlalchemy import Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessions = async_sessionmaker[AsyncSession]
TASKS: Table = TaskRecord.__table__  # type: ignore[assignment]

DOCUMENTS: list[Any] = [
    {"zz": 1e308, "a": -0.0, "nested": {"bb": [1, 2.5, None], "a": "é\u0001"}},
    [1, "two", {"b": True, "a": False}],
    None,  # SQL NULL, not JSON null
    "text",
]


def _task_rows(run_id: str, prefix: str, n: int) -> list[dict[str, Any]]:
    at = datetime(2026, 12, 4, 13, 0, 0, 123456, tzinfo=UTC)
    return [
        {
            "id": f"{prefix}{i}",
            "run_id": run_id,
            "node_id": prefix,
            "item_index": i,
            "status": "ready",
            "attempt": 1,
            "max_attempts": 3,
            "input": DOCUMENTS[i % len(DOCUMENTS)],
            "error": None,
            "ready_at": at,
        }
        for i in range(n)
    ]


async def _run(sessions: Sessions) -> str:
    async with sessions() as session, session.begin():
        run = RunRecord(tenant_id="t", workflow_name="w", spec={}, inputs={}, status="running")
        session.add(run)
    return run.id


async def test_copied_rows_read_back_as_inserted_ones(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await _run(sessions)
    n = 8
    async with sessions() as session, session.begin():
        await session.execute(insert(TASKS), _task_rows(run_id, "insert-", n))  # Core's
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 10**9)  # an unnest insert (executemany)
        assert not bulk.uses_copy(session, n)
        await insert_many(session, TASKS, _task_rows(run_id, "few-", n))
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", 1)  # COPY where the database has it
        await insert_many(session, TASKS, _task_rows(run_id, "copy-", n))
        copied = bulk.uses_copy(session, n)
    async with sessions() as session:
        # The stored text, not only the parsed value: key order, -0.0, 1e308, SQL NULL.
        rows = (
            await session.execute(
                select(TASKS.c.id, text("CAST(input AS TEXT)"), TASKS.c.ready_at, TASKS.c.attempt)
                .where(TASKS.c.run_id == run_id)
                .order_by(TASKS.c.id)
            )
        ).all()
    by_id = {row[0]: row[1:] for row in rows}
    assert len(by_id) == 3 * n
    for i in range(n):
        assert by_id[f"copy-{i}"] == by_id[f"insert-{i}"], i
        assert by_id[f"few-{i}"] == by_id[f"insert-{i}"], i
    assert by_id["copy-2"][0] is None
    assert by_id["copy-0"][1] == datetime(2026, 12, 4, 13, 0, 0, 123456, tzinfo=UTC)
    assert copied == (sessions.kw["bind"].dialect.name == "postgresql")


async def test_a_column_copy_cannot_default_must_be_given(sessions: Sessions) -> None:
    run_id = await _run(sessions)
    rows = _task_rows(run_id, "x", 3)
    for row in rows:
        del row["status"]  # a Python-side default only
    async with sessions() as session, session.begin():
        if bulk.uses_copy(session, 1000):  # PostgreSQL (COPY or unnest): refused up front
            with pytest.raises(ValueError, match="status"):
                await insert_many(session, TASKS, rows)
            return
        await insert_many(session, TASKS, rows)  # SQLite: an INSERT, which runs the default
        statuses = await session.scalars(select(TASKS.c.status).where(TASKS.c.run_id == run_id))
        assert list(statuses) == ["pending"] * 3


@pytest.mark.parametrize("count", [3, bulk.COPY_MIN_ROWS + 50])
async def test_many_outbox_rows_keep_their_order_and_content(
    sessions: Sessions, count: int
) -> None:
    rows = [
        ("task.ready", f"k{i}", [("ce_id", f"id-{i}".encode()), ("ce_subject", b"{x}")], b"p%d" % i)
        for i in range(count)
    ]
    async with sessions() as session, session.begin():
        staged = await insert_outbox(session, rows)
    ids = [m.id for m in staged]
    assert ids == sorted(ids)
    assert len(set(ids)) == count
    assert [m.key for m in staged] == [f"k{i}" for i in range(count)]
    async with sessions() as session, session.begin():
        claimed = await claim_unpublished(session, limit=count)
    assert [m.id for m in claimed] == ids
    assert [(m.key, m.payload) for m in claimed] == [(f"k{i}", b"p%d" % i) for i in range(count)]
    assert claimed[-1].kafka_headers() == [
        ("ce_id", f"id-{count - 1}".encode()),
        ("ce_subject", b"{x}"),
    ]
    assert all(m.created_at is not None and m.published_at is None for m in claimed)
    assert isinstance(claimed[0], OutboxMessage)


@pytest.mark.parametrize(
    "db_settings", [pytest.param("postgres", marks=pytest.mark.integration)], indirect=True
)
async def test_reserved_ids_ascend_unused_and_in_the_sessions_transaction(
    sessions: Sessions,
) -> None:
    """Ids for a COPY come from the table's sequence, in the caller's transaction."""
    table: Table = OutboxMessage.__table__  # type: ignore[assignment]
    async with sessions() as session:
        async with session.begin():
            first = await bulk.reserve_ids(session, table, 1_000)
            assert session.in_transaction()
        async with session.begin():
            second = await bulk.reserve_ids(session, table, 3)
    assert first == sorted(first)
    assert len(set(first)) == 1_000
    assert min(second) > max(first)  # a sequence never hands a value out twice
    assert await _outbox_ids(sessions) == []  # reserved, not inserted


async def _outbox_ids(sessions: Sessions) -> list[int]:
    async with sessions() as session:
        return list(await session.scalars(select(OutboxMessage.id)))
