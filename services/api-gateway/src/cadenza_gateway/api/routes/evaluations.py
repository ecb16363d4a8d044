"""/v1/evaluations: results of evaluation suites (`cadenza eval`), stored per tenant.

The CLI runs the cases through the engine and scores them (libs/evaluation); the gateway
keeps the results so CI and operators can read them back. Scopes: `runs:write` to store,
`runs:read` to read (an evaluation is a view over the tenant's runs)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from cadenza_state import EvaluationRecord
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from ... import metrics
from ...auth import CanReadRuns, CanWriteRuns
from ...problems import EvaluationNotFound, problem_responses
from ...query_types import INTEGER_TEXT
from ..deps import SessionDep

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"], responses=problem_responses(422))


class ScoreBody(BaseModel):
    criterion: str = Field(min_length=1, max_length=64)
    passed: bool = Field(strict=True)
    score: float = Field(strict=True, ge=0, le=1)
    detail: str = Field(default="", max_length=2000)


class CaseResultBody(BaseModel):
    case: str = Field(min_length=1, max_length=256)
    variant: str = Field(max_length=256)
    run_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=32)
    passed: bool = Field(strict=True)
    credit: float = Field(strict=True, ge=0, le=1)
    scores: list[ScoreBody]
    error: str | None = Field(default=None, max_length=2000)


class RegressionBody(BaseModel):
    case: str = Field(max_length=256)
    detail: str = Field(max_length=2000)


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suite: str = Field(min_length=1, max_length=256)
    agent: str | None = Field(default=None, max_length=256, description="Version under test.")
    against: str | None = Field(default=None, max_length=256, description="Baseline version.")
    results: list[CaseResultBody] = Field(min_length=1, max_length=10_000)
    regressions: list[RegressionBody] = Field(default_factory=list)


class EvaluationPublic(BaseModel):
    id: uuid.UUID
    suite: str
    agent: str | None
    against: str | None
    passed: bool = Field(
        description="Every case passed for the version under test and nothing regressed."
    )
    summary: dict[str, Any]
    results: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    created_at: datetime


class EvaluationsPublic(BaseModel):
    items: list[EvaluationPublic]


def _public(row: EvaluationRecord) -> EvaluationPublic:
    return EvaluationPublic(
        id=row.id,
        suite=row.suite,
        agent=row.agent,
        against=row.against,
        passed=row.passed,
        summary=row.summary,
        results=row.results,
        regressions=row.regressions,
        created_at=row.created_at,
    )


@router.post(
    "", status_code=201, response_model=EvaluationPublic, summary="Store an evaluation's results"
)
async def create_evaluation(
    body: EvaluationCreate, session: SessionDep, tenant: CanWriteRuns
) -> EvaluationPublic:
    tested = [r for r in body.results if r.variant == (body.agent or r.variant)]
    summary = {
        "cases": len({r.case for r in body.results}),
        "passed": sum(r.passed for r in tested),
        "credit": round(sum(r.credit for r in tested) / len(tested), 4) if tested else 0.0,
        "regressions": len(body.regressions),
    }
    row = EvaluationRecord(
        tenant_id=tenant,
        suite=body.suite,
        agent=body.agent,
        against=body.against,
        passed=all(r.passed for r in tested) and not body.regressions,
        summary=summary,
        results=[r.model_dump() for r in body.results],
        regressions=[r.model_dump() for r in body.regressions],
    )
    async with session.begin():
        session.add(row)
    outcome = "regressed" if body.regressions else ("passed" if row.passed else "failed")
    metrics.EVALUATIONS.labels(tenant, body.suite, outcome).inc()
    return _public(row)


@router.get("", response_model=EvaluationsPublic, summary="List evaluations, newest first")
async def list_evaluations(
    session: SessionDep,
    tenant: CanReadRuns,
    suite: Annotated[str | None, Query(max_length=256, description="Only this suite.")] = None,
    limit: Annotated[int, Query(ge=1, le=200), INTEGER_TEXT] = 50,
) -> EvaluationsPublic:
    query = select(EvaluationRecord).where(EvaluationRecord.tenant_id == tenant)
    if suite is not None:
        query = query.where(EvaluationRecord.suite == suite)
    query = query.order_by(EvaluationRecord.created_at.desc(), EvaluationRecord.id).limit(limit)
    async with session.begin():
        rows = (await session.scalars(query)).all()
    return EvaluationsPublic(items=[_public(r) for r in rows])


@router.get(
    "/{evaluation_id}",
    response_model=EvaluationPublic,
    summary="One evaluation with every case's scores",
    responses=problem_responses(404),
)
async def get_evaluation(
    evaluation_id: Annotated[uuid.UUID, Path(description="The evaluation id.")],
    session: SessionDep,
    tenant: CanReadRuns,
) -> EvaluationPublic:
    async with session.begin():
        row = await session.scalar(
            select(EvaluationRecord).where(
                EvaluationRecord.id == evaluation_id, EvaluationRecord.tenant_id == tenant
            )
        )
    if row is None:
        raise EvaluationNotFound(f"no evaluation {evaluation_id}")
    return _public(row)
