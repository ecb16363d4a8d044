"""Answers to held tool calls (approvals, effects in doubt): the approval row's decision,
its audit entry and the command to the orchestrator commit together (the caller's
transaction), so an answer is never recorded without reaching the run, or the reverse."""

from __future__ import annotations

from typing import Any

from cadenza_events import Envelope, HoldResolved, Topic, TopicRegistry
from cadenza_runtime import stage_event
from cadenza_state import ApprovalRecord, HoldKind, HoldStatus
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..auth.principal import current_actor
from ..problems import ApprovalAnswered, ApprovalNotFound, WrongHoldKind
from .audit import record_audit
from .runs import EVENT_SOURCE

# Which answers fit which kind of hold.
ANSWERS = {
    HoldKind.APPROVAL: {HoldStatus.APPROVED, HoldStatus.REJECTED},
    HoldKind.IN_DOUBT: {HoldStatus.DONE, HoldStatus.RETRY},
}


async def get_hold(
    *, session: AsyncSession, tenant_id: str, approval_id: str, for_update: bool = False
) -> ApprovalRecord:
    stmt = select(ApprovalRecord).where(
        ApprovalRecord.id == approval_id, ApprovalRecord.tenant_id == tenant_id
    )
    if for_update:
        stmt = stmt.with_for_update()
    row = await session.scalar(stmt)
    if row is None:
        raise ApprovalNotFound(f"no approval {approval_id!r}")
    return row


async def answer_hold(
    *,
    session: AsyncSession,
    registry: TopicRegistry,
    tenant_id: str,
    approval_id: str,
    decision: HoldStatus,
    comment: str | None,
    output: Any = None,
) -> ApprovalRecord:
    """Record ``decision`` on a pending hold (locked), audit it, and stage the command that
    makes the orchestrator dispatch the task again. Raises 404/409 problems."""
    row = await get_hold(
        session=session, tenant_id=tenant_id, approval_id=approval_id, for_update=True
    )
    if decision not in ANSWERS[HoldKind(row.kind)]:
        verbs = "approve or reject" if row.kind == HoldKind.APPROVAL else "resolve"
        raise WrongHoldKind(f"approval {approval_id} is of kind {row.kind!r}: {verbs} it")
    if row.status != HoldStatus.PENDING:
        raise ApprovalAnswered(
            f"approval {approval_id} was already answered: {row.status}", approval_status=row.status
        )
    row.status = decision.value
    row.comment = comment
    row.output = output if decision == HoldStatus.DONE else None
    row.decided_by = current_actor()
    # Database time: the worker compares it with the effect journal's (also database) time.
    row.decided_at = func.now()
    await session.flush()
    await session.refresh(row)
    command = HoldResolved(
        run_id=row.run_id,
        task_id=row.task_id,
        attempt=row.attempt,
        approval_id=row.id,
        kind=row.kind,
        decision=decision.value,
        comment=comment,
    )
    await stage_event(
        session,
        registry,
        Topic.TASK_RESULT,
        Envelope(
            command,
            source=EVENT_SOURCE,
            tenant_id=tenant_id,
            plan_id=row.run_id,
            task_id=row.task_id,
        ),
    )
    record_audit(
        session=session,
        tenant_id=tenant_id,
        action=f"{row.kind}.{decision.value}",
        subject=f"approval:{row.id}",
        data={
            "run_id": row.run_id,
            "task_id": row.task_id,
            "tool": row.tool,
            "call_index": row.call_index,
            "comment": comment,
        },
    )
    return row
