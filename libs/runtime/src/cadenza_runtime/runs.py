"""Creating a run: the one code path every way a run starts goes through (the gateway's
POST /v1/runs, a trigger's event, a schedule's tick). The caller owns the transaction, so
the run, its ``plan.requested`` and ``run.accepted`` events (staged in the outbox), its
audit entry and whatever the caller adds (a trigger's dedupe row, a schedule's fire row)
commit together or not at all.

On PostgreSQL the run, its events and its audit entry go as ONE statement (straight on
asyncpg, ``cadenza_state.direct``): a POST made five round trips (BEGIN, the run, the
outbox, the audit row, COMMIT) and SQLAlchemy's ORM flush of two objects. A caller that
adds nothing else asks for it ``alone``: then no BEGIN or COMMIT either."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cadenza_events import (
    Envelope,
    PlanRequested,
    RunCancelRequested,
    RunEvent,
    RunResumeRequested,
    Topic,
    TopicRegistry,
)
from cadenza_state import (
    AuditLogEntry,
    RunRecord,
    RunStatus,
    StagedMessage,
    direct,
    in_jsonb_key_order,
    utcnow,
)
from sqlalchemy.ext.asyncio import AsyncSession

from .staging import stage_event, stage_outbox


@dataclass(frozen=True)
class CreatedRun:
    """A pending run and its staged events (``plan.requested``, ``run.accepted``), which
    the caller publishes right after its commit (``OutboxRelay.publish_committed``) when it
    staged them with its ``publisher`` id — or leaves to the relay (``relay.notify()``)."""

    run: RunRecord
    events: list[StagedMessage]


def plan_requested(
    *,
    run_id: str,
    workflow_name: str,
    workflow_version: int | None,
    spec: dict[str, Any],
    inputs: dict[str, Any],
    budget: dict[str, Any] | None,
    replay: dict[str, Any] | None,
    row_version: int | None,
) -> PlanRequested:
    """The ``plan.requested`` of a new run. ``row_version``: the version its row was
    written at on PostgreSQL. Then, unless the run replays another (its ``replay`` may be
    large), the event carries the whole row, its documents in the key order the row reads
    back in (the engine's serializer writes them so): the orchestrator plans it without
    reading it, to the same task rows and dispatched params as from the row."""
    carried = row_version is not None and replay is None
    order = in_jsonb_key_order if carried else _as_given
    return PlanRequested(
        run_id=run_id,
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        spec=order(spec),
        inputs=order(inputs),
        budget=order(budget) if carried else None,
        row_version=row_version if carried else None,
    )


def _as_given(document: Any) -> Any:
    return document


async def create_run(
    *,
    session: AsyncSession,
    registry: TopicRegistry,
    tenant_id: str,
    workflow_name: str,
    workflow_version: int | None,
    spec: dict[str, Any],
    inputs: dict[str, Any],
    idempotency_key: str | None,
    actor: str,
    source: str,
    started_by: dict[str, Any] | None = None,
    run_id: str | None = None,
    budget: dict[str, Any] | None = None,
    parent_run_id: str | None = None,
    lineage: dict[str, Any] | None = None,
    replay: dict[str, Any] | None = None,
    publisher: str | None = None,
    alone: bool = False,
) -> CreatedRun:
    """Insert a pending run and stage its ``plan.requested`` and ``run.accepted`` events
    (one bulk insert; ``publisher``: the relay id of a caller that publishes them itself
    after the commit).

    ``started_by`` (a trigger's event, a schedule's tick) is stored on the run and carried
    by ``run.accepted``, so the timeline shows what started it. ``budget``: the run
    request's limits (the workers apply them with the workflow's own). A rerun or fork also
    records its parent, what was asked (``lineage``) and what the orchestrator may reuse
    (``replay``, docs/replay.md); it is audited as ``run.rerun`` / ``run.fork``. Raises IntegrityError at
    once (the insert is flushed first) when another request took the same idempotency key.

    ``alone`` (PostgreSQL): the caller writes nothing else in its transaction, so the one
    statement may run on its own — committed when it returns, whatever the caller does
    next. Rows the caller added before are flushed first, and the statement then joins
    their transaction: they commit together or not at all, ``alone`` or not."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": run_id or str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "workflow_name": workflow_name,
        "workflow_version": workflow_version,
        "spec": spec,
        "inputs": inputs,
        "status": RunStatus.PENDING.value,
        "idempotency_key": idempotency_key,
        "started_by": started_by,
        "budget": budget,
        "parent_run_id": parent_run_id,
        "lineage": lineage,
        "replay": replay,
        "version": 0,
        "created_at": now,
        "updated_at": now,
    }
    run = RunRecord(**values)
    into: direct.Deferred | None = None
    if direct.is_postgres(session):
        if session.new or session.dirty or session.deleted:
            await session.flush()  # the caller's rows first: a failure then fails them all
        into = direct.Deferred(alone=alone)
        await direct.insert_rows(session, _RUNS, [values], into=into)
    else:
        session.add(run)
        await session.flush()
    plan = plan_requested(
        run_id=run.id,
        workflow_name=workflow_name,
        workflow_version=workflow_version,
        spec=spec,
        inputs=inputs,
        budget=budget,
        replay=replay,
        row_version=values["version"] if into is not None else None,
    )
    data: dict[str, Any] = {"workflow_name": workflow_name, "workflow_version": workflow_version}
    if started_by is not None:
        data["started_by"] = started_by
    if lineage is not None:
        data["lineage"] = lineage
    accepted = RunEvent(
        run_id=run.id, kind="run.accepted", status=RunStatus.PENDING.value, data=data
    )
    audit = {
        "tenant_id": tenant_id,
        "actor": actor,
        "action": f"run.{lineage['kind']}" if lineage is not None else "run.created",
        "subject": f"run:{run.id}",
        "data": data,
        "created_at": now,
    }
    if into is not None:
        await direct.insert_rows(session, _AUDIT, [audit], into=into)
    else:
        session.add(AuditLogEntry(**audit))
    events = await stage_outbox(  # on PostgreSQL the group's last part: ONE statement
        session,
        registry,
        [
            (
                Topic.PLAN_REQUESTED,
                Envelope(plan, source=source, tenant_id=tenant_id, plan_id=run.id),
            ),
            (
                Topic.RUN_EVENTS,
                Envelope(accepted, source=source, tenant_id=tenant_id, plan_id=run.id),
            ),
        ],
        publisher=publisher,
        into=into,
    )
    return CreatedRun(run, events)


_RUNS: Any = RunRecord.__table__
_AUDIT: Any = AuditLogEntry.__table__


async def request_cancel(
    *,
    session: AsyncSession,
    registry: TopicRegistry,
    run: RunRecord,
    actor: str,
    source: str,
    reason: str | None = None,
) -> None:
    """Stage the ``run.cancel_requested`` command for the orchestrator, the one writer of run
    and task state: it cancels the run and its open tasks and sets the marker that stops
    the workers. Keyed by run on ``plan.requested``, so it follows the run's plan in order.
    Audited as ``run.cancel_requested`` by ``actor``."""
    command = RunCancelRequested(run_id=run.id, requested_by=actor, reason=reason)
    data = {"reason": reason} if reason else None
    await _stage_command(session, registry, run, command, source, actor, data)


async def request_resume(
    *,
    session: AsyncSession,
    registry: TopicRegistry,
    run: RunRecord,
    actor: str,
    source: str,
    reason: str | None = None,
    budget: dict[str, Any] | None = None,
) -> None:
    """Stage the ``run.resume_requested`` command for the orchestrator, the one writer of run
    and task state: it raises the run's own limit (``budget``, if given) and dispatches the
    tasks a budget held. Keyed by run on ``plan.requested`` like a cancel. Audited as
    ``run.resume_requested`` by ``actor``."""
    command = RunResumeRequested(run_id=run.id, requested_by=actor, reason=reason, budget=budget)
    data: dict[str, Any] = {}
    if reason:
        data["reason"] = reason
    if budget:
        data["budget"] = budget
    await _stage_command(session, registry, run, command, source, actor, data or None)


async def _stage_command(
    session: AsyncSession,
    registry: TopicRegistry,
    run: RunRecord,
    command: RunCancelRequested | RunResumeRequested,
    source: str,
    actor: str,
    data: dict[str, Any] | None,
) -> None:
    """Stage a command for the orchestrator on ``plan.requested`` (keyed by the run, so it
    follows the run's plan in order) with its audit row (action = the command's kind)."""
    await stage_event(
        session,
        registry,
        Topic.PLAN_REQUESTED,
        Envelope(command, source=source, tenant_id=run.tenant_id, plan_id=run.id),
    )
    kind = (
        "run.cancel_requested"
        if isinstance(command, RunCancelRequested)
        else "run.resume_requested"
    )
    session.add(
        AuditLogEntry(
            tenant_id=run.tenant_id,
            actor=actor,
            action=kind,
            subject=f"run:{run.id}",
            data=data,
        )
    )
