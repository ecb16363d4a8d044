"""/v1/triggers: register triggers (immutable, numbered versions), enable/disable them (a
new version each), read and delete them. The trigger service consumes the topics of the
enabled ones; POST /v1/events reaches those with ``http: true``."""

from __future__ import annotations

from typing import Annotated, Any

from cadenza_state import TriggeredEventRecord, TriggerRecord
from cadenza_triggers import TriggerSpec
from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from ... import crud
from ...auth import CanReadTriggers, CanWriteTriggers
from ...crud import versions
from ...problems import FieldProblem, InvalidRequest, TriggerNotFound, problem_responses
from ...trigger_models import TriggerPublic, TriggersPublic
from ...versioning import insert_version
from ..deps import SessionDep, SettingsDep, require_json
from ..named_routes import add_delete_route, add_switch_routes

router = APIRouter(prefix="/v1/triggers", tags=["triggers"], responses=problem_responses(422))
NamePath = Annotated[str, Path(max_length=128, description="Trigger name.")]


async def require_workflow(session: SessionDep, tenant: str, ref: tuple[str, int | None]) -> None:
    """422 naming `workflow` unless the workflow (version) is registered: triggers and
    schedules start registered workflows."""
    name, version = ref
    async with session.begin():
        workflow = await crud.get_workflow(
            session=session, tenant_id=tenant, name=name, version=version
        )
    if workflow is None:
        which = f"{name}@{version}" if version else name
        message = f"field workflow: no workflow {which!r} is registered"
        raise InvalidRequest(
            message,
            errors=[FieldProblem(field="workflow", code="unknown_workflow", message=message)],
        )


async def _register(
    session: SessionDep, tenant: str, spec: dict[str, Any], action: str
) -> TriggerRecord:
    async def insert() -> TriggerRecord:
        record = await versions.insert_next(
            TriggerRecord, session=session, tenant_id=tenant, name=spec["name"], spec=spec
        )
        crud.record_audit(
            session=session,
            tenant_id=tenant,
            action=action,
            subject=f"trigger:{record.name}@{record.version}",
        )
        return record

    return await insert_version(session, insert, "trigger_version")


@router.post(
    "",
    status_code=201,
    response_model=TriggerPublic,
    summary="Register a trigger version",
    dependencies=[Depends(require_json)],
    responses=problem_responses(400, 413, 415, 422),
)
async def register_trigger(
    spec: TriggerSpec,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    tenant: CanWriteTriggers,
) -> TriggerPublic:
    """Registering an existing name adds version N+1, which takes over at once. The
    workflow must be registered (422 naming `workflow`); its inputs are checked per event."""
    await require_workflow(session, tenant, spec.workflow_ref())
    record = await _register(session, tenant, spec.model_dump(mode="json"), "trigger.registered")
    response.headers["Location"] = f"{settings.public_url}/v1/triggers/{record.name}"
    return TriggerPublic.from_record(record)


@router.get("", response_model=TriggersPublic, summary="List triggers (the version in force)")
async def list_triggers(session: SessionDep, tenant: CanReadTriggers) -> TriggersPublic:
    records = await versions.list_latest(
        TriggerRecord, session=session, tenant_id=tenant, after_name=None, limit=1000
    )
    return TriggersPublic(items=[TriggerPublic.from_record(r) for r in records])


@router.get(
    "/{name}",
    response_model=TriggerPublic,
    summary="Get a trigger (the version in force)",
    responses=problem_responses(404),
)
async def get_trigger(
    name: NamePath, session: SessionDep, tenant: CanReadTriggers
) -> TriggerPublic:
    record = await versions.get_version(TriggerRecord, session=session, tenant_id=tenant, name=name)
    if record is None:
        raise TriggerNotFound(f"no trigger named {name!r}")
    return TriggerPublic.from_record(record)


@router.get(
    "/{name}/versions",
    response_model=TriggersPublic,
    summary="List a trigger's versions, newest first",
    responses=problem_responses(404),
)
async def list_trigger_versions(
    name: NamePath, session: SessionDep, tenant: CanReadTriggers
) -> TriggersPublic:
    records = await versions.list_versions(
        TriggerRecord, session=session, tenant_id=tenant, name=name
    )
    if not records:
        raise TriggerNotFound(f"no trigger named {name!r}")
    return TriggersPublic(items=[TriggerPublic.from_record(r) for r in records])


async def _set_enabled(session: SessionDep, tenant: str, name: str, enabled: bool) -> TriggerPublic:
    async with session.begin():
        latest = await versions.get_version(
            TriggerRecord, session=session, tenant_id=tenant, name=name
        )
    if latest is None:
        raise TriggerNotFound(f"no trigger named {name!r}")
    if bool(latest.spec.get("enabled", True)) == enabled:
        return TriggerPublic.from_record(latest)
    spec = {**latest.spec, "enabled": enabled}
    action = "trigger.enabled" if enabled else "trigger.disabled"
    return TriggerPublic.from_record(await _register(session, tenant, spec, action))


add_switch_routes(
    router,
    noun="trigger",
    switch=_set_enabled,
    response_model=TriggerPublic,
    on=("enable", "Enable a trigger (a new version, unless already enabled)"),
    off=("disable", "Disable a trigger (a new version, unless already disabled)"),
)


async def _forget_events(session: AsyncSession, tenant: str, name: str) -> None:
    """The trigger's dedupe ledger goes with it."""
    await session.execute(
        delete(TriggeredEventRecord).where(
            TriggeredEventRecord.tenant_id == tenant, TriggeredEventRecord.trigger_name == name
        )
    )


add_delete_route(
    router,
    noun="trigger",
    record=TriggerRecord,
    not_found=TriggerNotFound,
    summary="Delete a trigger, every version and its dedupe ledger",
    description="""Runs it started stay. Registering the name again starts a fresh ledger: events it
    saw before may start runs again.""",
    also=_forget_events,
)
