"""/v1/schedules: cron schedules of workflows (create, read with their next ticks, pause,
resume, delete). The trigger service's scheduler fires them, once per tick."""

from __future__ import annotations

from typing import Annotated

from cadenza_state import ScheduleRecord, utcnow
from cadenza_triggers import ScheduleSpec, next_fire
from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ... import crud
from ...auth import CanReadTriggers, CanWriteTriggers
from ...problems import (
    FieldProblem,
    InvalidRequest,
    ScheduleExists,
    ScheduleNotFound,
    problem_responses,
)
from ...trigger_models import SchedulePublic, SchedulesPublic
from ..deps import SessionDep, SettingsDep, require_json
from ..named_routes import add_delete_route, add_switch_routes
from .triggers import require_workflow

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], responses=problem_responses(422))
NamePath = Annotated[str, Path(max_length=128, description="Schedule name.")]


async def _get(session: SessionDep, tenant: str, name: str) -> ScheduleRecord:
    record = await session.scalar(
        select(ScheduleRecord).where(
            ScheduleRecord.tenant_id == tenant, ScheduleRecord.name == name
        )
    )
    if record is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return record


@router.post(
    "",
    status_code=201,
    response_model=SchedulePublic,
    summary="Create a schedule",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 409, 415, 422),
)
async def create_schedule(
    spec: ScheduleSpec,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    tenant: CanWriteTriggers,
) -> SchedulePublic:
    """The workflow must be registered (422 naming `workflow`); the inputs are checked at
    each tick (a tick whose run is refused is skipped and counted)."""
    await require_workflow(session, tenant, spec.workflow_ref())
    record = ScheduleRecord(
        tenant_id=tenant,
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        paused=False,
        next_fire_at=next_fire(spec, utcnow()),
    )
    try:
        async with session.begin():
            session.add(record)
            await session.flush()
            crud.record_audit(
                session=session,
                tenant_id=tenant,
                action="schedule.created",
                subject=f"schedule:{spec.name}",
            )
    except IntegrityError:
        raise ScheduleExists(
            f"a schedule named {spec.name!r} exists; delete it first or pick another name"
        ) from None
    response.headers["Location"] = f"{settings.public_url}/v1/schedules/{record.name}"
    return SchedulePublic.from_record(record)


@router.get("", response_model=SchedulesPublic, summary="List schedules")
async def list_schedules(session: SessionDep, tenant: CanReadTriggers) -> SchedulesPublic:
    records = (
        await session.scalars(
            select(ScheduleRecord)
            .where(ScheduleRecord.tenant_id == tenant)
            .order_by(ScheduleRecord.name)
            .limit(1000)
        )
    ).all()
    return SchedulesPublic(items=[SchedulePublic.from_record(r) for r in records])


@router.get(
    "/{name}",
    response_model=SchedulePublic,
    summary="Get a schedule and its next ticks",
    responses=problem_responses(404),
)
async def get_schedule(
    name: NamePath, session: SessionDep, tenant: CanReadTriggers
) -> SchedulePublic:
    return SchedulePublic.from_record(await _get(session, tenant, name))


@router.put(
    "/{name}",
    response_model=SchedulePublic,
    summary="Replace a schedule's definition",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 404, 415, 422),
)
async def replace_schedule(
    name: NamePath, spec: ScheduleSpec, session: SessionDep, tenant: CanWriteTriggers
) -> SchedulePublic:
    """The body's `name` must be the path's. The next tick is computed afresh from now
    (ticks of the old definition that are due are not fired); pause state is kept."""
    if spec.name != name:
        message = f"field name: {spec.name!r} is not this schedule's name {name!r}"
        raise InvalidRequest(
            message, errors=[FieldProblem(field="name", code="invalid_field", message=message)]
        )
    await require_workflow(session, tenant, spec.workflow_ref())
    async with session.begin():
        record = await _get(session, tenant, name)
        record.spec = spec.model_dump(mode="json")
        record.next_fire_at = next_fire(spec, utcnow())
        crud.record_audit(
            session=session,
            tenant_id=tenant,
            action="schedule.replaced",
            subject=f"schedule:{name}",
        )
    await session.refresh(record)
    return SchedulePublic.from_record(record)


async def _set_paused(session: SessionDep, tenant: str, name: str, paused: bool) -> SchedulePublic:
    async with session.begin():
        record = await _get(session, tenant, name)
        if record.paused != paused:
            record.paused = paused
            # Resuming keeps next_fire_at: ticks missed while paused go through the
            # schedule's catch-up policy like ticks missed while the scheduler was down.
            crud.record_audit(
                session=session,
                tenant_id=tenant,
                action="schedule.paused" if paused else "schedule.resumed",
                subject=f"schedule:{name}",
            )
    await session.refresh(record)
    return SchedulePublic.from_record(record)


add_switch_routes(
    router,
    noun="schedule",
    switch=_set_paused,
    response_model=SchedulePublic,
    on=("pause", "Pause a schedule (no tick fires until resumed)"),
    off=("resume", "Resume a paused schedule (missed ticks follow its catch-up policy)"),
)
add_delete_route(
    router,
    noun="schedule",
    record=ScheduleRecord,
    not_found=ScheduleNotFound,
    summary="Delete a schedule",
)
