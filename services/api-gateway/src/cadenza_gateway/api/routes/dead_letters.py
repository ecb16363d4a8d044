"""/v1/dead-letters: messages a consumer gave up on (poison messages), kept in PostgreSQL by
the orchestrator's dead-letter recorder. An admin inspects them, replays one after a fix
(the original record — topic, key, headers, bytes — goes back to its topic through the
outbox) or discards it. Replaying the result of a stuck run completes it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from cadenza_state import DeadLetterRecord, DeadLetterStatus, insert_outbox, utcnow
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from ... import metrics
from ...auth import AdminPrincipal, Principal
from ...crud.audit import record_audit
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from ...problems import DeadLetterHandled, DeadLetterNotFound, InvalidCursor, problem_responses
from ...query_types import INTEGER_TEXT
from ..deps import ResourcesDep, SessionDep

router = APIRouter(
    prefix="/v1/dead-letters",
    tags=["dead letters"],
    responses=problem_responses(400, 401, 403, 422),
)

FIRST_BYTES = 512
# The id is a BIGINT column: a larger number is refused naming `path.letter_id`, not a 500.
MAX_LETTER_ID = 2**63 - 1
DeadLetterIdPath = Annotated[
    int, Path(ge=1, le=MAX_LETTER_ID, description="Dead letter id."), INTEGER_TEXT
]


class DeadLetterPublic(BaseModel):
    id: int
    status: str = Field(description="pending, replayed or discarded.")
    topic: str = Field(description="The topic the message was consumed from.")
    partition: int
    offset: int
    consumer_group: str = Field(description="The consumer that gave up on it.")
    key: str | None
    event_type: str | None = Field(description="Its CloudEvents type, when it had one.")
    reason: str
    error_code: str
    attempts: int
    run_id: str | None
    task_id: str | None
    size: int = Field(description="Bytes of the message value.")
    first_bytes: str = Field(description=f"The first {FIRST_BYTES} bytes of the value (UTF-8).")
    failed_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None

    @classmethod
    def of(cls, row: DeadLetterRecord) -> DeadLetterPublic:
        return cls(
            id=row.id,
            status=row.status,
            topic=row.original_topic,
            partition=row.partition,
            offset=row.offset,
            consumer_group=row.consumer_group,
            key=row.key,
            event_type=row.event_type,
            reason=row.reason,
            error_code=row.error_code,
            attempts=row.attempts,
            run_id=row.run_id,
            task_id=row.task_id,
            size=len(row.value),
            first_bytes=row.value[:FIRST_BYTES].decode("utf-8", "replace"),
            failed_at=row.failed_at,
            resolved_by=row.resolved_by,
            resolved_at=row.resolved_at,
        )


class DeadLettersPublic(BaseModel):
    items: list[DeadLetterPublic]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for older ones.")


@router.get("", response_model=DeadLettersPublic, summary="Dead letters, newest first")
async def list_dead_letters(
    session: SessionDep,
    principal: AdminPrincipal,
    status: Annotated[Literal["pending", "replayed", "discarded"] | None, Query()] = None,
    topic: Annotated[str | None, Query(max_length=255)] = None,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE), INTEGER_TEXT] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
) -> DeadLettersPublic:
    stmt = select(DeadLetterRecord).where(DeadLetterRecord.tenant_id == principal.tenant)
    if status is not None:
        stmt = stmt.where(DeadLetterRecord.status == status)
    if topic is not None:
        stmt = stmt.where(DeadLetterRecord.original_topic == topic)
    if run_id is not None:
        stmt = stmt.where(DeadLetterRecord.run_id == run_id)
    if cursor is not None:
        if not cursor.isdigit():
            raise InvalidCursor("invalid cursor: pass next_cursor back unchanged")
        stmt = stmt.where(DeadLetterRecord.id < int(cursor))
    async with session.begin():
        rows = list(
            await session.scalars(stmt.order_by(DeadLetterRecord.id.desc()).limit(limit + 1))
        )
    page = rows[:limit]
    return DeadLettersPublic(
        items=[DeadLetterPublic.of(r) for r in page],
        next_cursor=str(page[-1].id) if len(rows) > limit else None,
    )


async def _letter(
    session: SessionDep, tenant: str, letter_id: int, *, for_update: bool = False
) -> DeadLetterRecord:
    stmt = select(DeadLetterRecord).where(
        DeadLetterRecord.id == letter_id, DeadLetterRecord.tenant_id == tenant
    )
    row = await session.scalar(stmt.with_for_update() if for_update else stmt)
    if row is None:
        raise DeadLetterNotFound(f"no dead letter {letter_id}")
    return row


async def _pending(session: SessionDep, tenant: str, letter_id: int) -> DeadLetterRecord:
    row = await _letter(session, tenant, letter_id, for_update=True)
    if row.status != DeadLetterStatus.PENDING:
        raise DeadLetterHandled(f"dead letter {letter_id} was already {row.status}")
    return row


def _resolve(row: DeadLetterRecord, status: DeadLetterStatus, principal: Principal) -> None:
    row.status = status.value
    row.resolved_by = principal.subject
    row.resolved_at = utcnow()


@router.get(
    "/{letter_id}",
    response_model=DeadLetterPublic,
    summary="One dead letter",
    responses=problem_responses(404),
)
async def get_dead_letter(
    letter_id: DeadLetterIdPath, session: SessionDep, principal: AdminPrincipal
) -> DeadLetterPublic:
    async with session.begin():
        return DeadLetterPublic.of(await _letter(session, principal.tenant, letter_id))


@router.post(
    "/{letter_id}/replay",
    response_model=DeadLetterPublic,
    summary="Publish the original record again to its topic (after a fix)",
    responses=problem_responses(404, 409),
)
async def replay_dead_letter(
    letter_id: DeadLetterIdPath,
    session: SessionDep,
    resources: ResourcesDep,
    principal: AdminPrincipal,
) -> DeadLetterPublic:
    async with session.begin():
        row = await _pending(session, principal.tenant, letter_id)
        # Through the outbox: the replay is published if and only if this commit happens.
        headers = [(name, value.encode()) for name, value in row.headers.items()]
        await insert_outbox(session, [(row.original_topic, row.key, headers, row.value)])
        _resolve(row, DeadLetterStatus.REPLAYED, principal)
        record_audit(
            session=session,
            tenant_id=principal.tenant,
            action="dead_letter.replayed",
            subject=f"dead_letter:{row.id}",
            data={"topic": row.original_topic, "run_id": row.run_id, "task_id": row.task_id},
        )
        public = DeadLetterPublic.of(row)
    resources.relay.notify()
    metrics.DEAD_LETTER_ACTIONS.labels("replayed").inc()
    return public


@router.post(
    "/{letter_id}/discard",
    response_model=DeadLetterPublic,
    summary="Drop a dead letter for good (it stays listed as discarded)",
    responses=problem_responses(404, 409),
)
async def discard_dead_letter(
    letter_id: DeadLetterIdPath, session: SessionDep, principal: AdminPrincipal
) -> DeadLetterPublic:
    async with session.begin():
        row = await _pending(session, principal.tenant, letter_id)
        _resolve(row, DeadLetterStatus.DISCARDED, principal)
        record_audit(
            session=session,
            tenant_id=principal.tenant,
            action="dead_letter.discarded",
            subject=f"dead_letter:{row.id}",
            data={"topic": row.original_topic, "reason": row.reason[:500]},
        )
        public = DeadLetterPublic.of(row)
    metrics.DEAD_LETTER_ACTIONS.labels("discarded").inc()
    return public
