"""/v1/approvals: the inbox of held tool calls — risky calls waiting for a yes or no
(``kind=approval``) and non-idempotent calls whose effect is in doubt (``kind=in_doubt``).
An answer dispatches the task again; the agent resumes at the held call (docs/guardrails.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from cadenza_state import ApprovalRecord, HoldStatus
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select

from ... import metrics
from ...auth import CanAnswerApprovals
from ...crud.holds import answer_hold, get_hold
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_time_id_cursor, encode_cursor
from ...problems import problem_responses
from ...query_types import INTEGER_TEXT
from ..deps import ResourcesDep, SessionDep, require_json

router = APIRouter(
    prefix="/v1/approvals", tags=["approvals"], responses=problem_responses(400, 401, 403, 422)
)

ApprovalIdPath = Annotated[str, Path(max_length=64, description="Approval id.")]


class ApprovalPublic(BaseModel):
    id: str
    kind: Literal["approval", "in_doubt"] = Field(
        description="`approval`: a call waiting for a yes or no; `in_doubt`: a non-idempotent "
        "call that was sent but whose result was never recorded."
    )
    status: str = Field(
        description="pending, approved, rejected, expired (approval); done, retry (in doubt); "
        "cancelled (the run ended first)."
    )
    run_id: str
    task_id: str
    node_id: str
    attempt: int = Field(description="The task attempt that was held.")
    call_index: int
    tool: str
    arguments: Any = Field(description="The exact call's arguments.")
    reason: str | None = Field(description="What the agent said with the call, or why held.")
    rule: str | None = Field(description="What made the call need approval.")
    on_timeout: str
    expires_at: datetime | None
    comment: str | None
    output: Any = Field(default=None, description="In doubt, resolved `done`: its result.")
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: ApprovalRecord) -> ApprovalPublic:
        return cls.model_validate(row, from_attributes=True)


class ApprovalsPublic(BaseModel):
    items: list[ApprovalPublic]
    next_cursor: str | None = None


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=4000, description="Why (audited).")


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["done", "retry"] = Field(
        description="`done`: the call happened — `output` is its result, the task goes on "
        "with it; `retry`: it did not happen — make it again."
    )
    output: Any = Field(default=None, description="The call's result (with `done`).")
    comment: str | None = Field(default=None, max_length=4000)


@router.get("", response_model=ApprovalsPublic, summary="The inbox of held tool calls")
async def list_approvals(
    session: SessionDep,
    tenant: CanAnswerApprovals,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=16, description="e.g. pending")] = None,
    kind: Annotated[Literal["approval", "in_doubt"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE), INTEGER_TEXT] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ApprovalsPublic:
    """Newest first; filter by run, status and kind. The tenant is the credential's."""
    stmt = select(ApprovalRecord).where(ApprovalRecord.tenant_id == tenant)
    if run_id is not None:
        stmt = stmt.where(ApprovalRecord.run_id == run_id)
    if status is not None:
        stmt = stmt.where(ApprovalRecord.status == status)
    if kind is not None:
        stmt = stmt.where(ApprovalRecord.kind == kind)
    if cursor is not None:
        at, last = decode_time_id_cursor(cursor)
        stmt = stmt.where(
            or_(
                ApprovalRecord.created_at < at,
                (ApprovalRecord.created_at == at) & (ApprovalRecord.id < last),
            )
        )
    stmt = stmt.order_by(ApprovalRecord.created_at.desc(), ApprovalRecord.id.desc())
    async with session.begin():
        rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit and page else None
    )
    return ApprovalsPublic(items=[ApprovalPublic.of(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/{approval_id}",
    response_model=ApprovalPublic,
    summary="One held tool call",
    responses=problem_responses(404),
)
async def get_approval(
    approval_id: ApprovalIdPath, session: SessionDep, tenant: CanAnswerApprovals
) -> ApprovalPublic:
    async with session.begin():
        return ApprovalPublic.of(
            await get_hold(session=session, tenant_id=tenant, approval_id=approval_id)
        )


async def _answer(
    session: SessionDep,
    resources: ResourcesDep,
    tenant: str,
    approval_id: str,
    decision: HoldStatus,
    comment: str | None,
    output: Any = None,
) -> ApprovalPublic:
    async with session.begin():
        row = await answer_hold(
            session=session,
            registry=resources.registry,
            tenant_id=tenant,
            approval_id=approval_id,
            decision=decision,
            comment=comment,
            output=output,
        )
        public = ApprovalPublic.of(row)
    resources.relay.notify()
    metrics.HOLD_DECISIONS.labels(public.kind, decision.value).inc()
    return public


_ANSWER_RESPONSES = problem_responses(404, 409, 415)


def _decision_route(action: str, decision: HoldStatus, summary: str) -> None:
    """``POST /{approval_id}/{action}``: approve and reject differ only in the decision."""

    async def decide(
        approval_id: ApprovalIdPath,
        session: SessionDep,
        resources: ResourcesDep,
        tenant: CanAnswerApprovals,
        body: Answer | None = None,
    ) -> ApprovalPublic:
        comment = body.comment if body else None
        return await _answer(session, resources, tenant, approval_id, decision, comment)

    router.post(
        f"/{{approval_id}}/{action}",
        name=action,  # the operation id stays `approve_…` / `reject_…`
        response_model=ApprovalPublic,
        summary=summary,
        responses=_ANSWER_RESPONSES,
        dependencies=[Depends(require_json)],
    )(decide)


_decision_route(
    "approve", HoldStatus.APPROVED, "Approve a held call: the task resumes and makes it (once)"
)
_decision_route(
    "reject",
    HoldStatus.REJECTED,
    "Reject a held call: the agent is told, as the call's observation",
)


@router.post(
    "/{approval_id}/resolve",
    response_model=ApprovalPublic,
    summary="Resolve an effect in doubt: it happened (done, with its output) or retry",
    responses=_ANSWER_RESPONSES,
    dependencies=[Depends(require_json)],
)
async def resolve(
    approval_id: ApprovalIdPath,
    body: Resolution,
    session: SessionDep,
    resources: ResourcesDep,
    tenant: CanAnswerApprovals,
) -> ApprovalPublic:
    return await _answer(
        session,
        resources,
        tenant,
        approval_id,
        HoldStatus(body.outcome),
        body.comment,
        body.output,
    )
