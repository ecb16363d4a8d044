"""/v1/workflows: register workflow specs as immutable, numbered versions and read them."""

from __future__ import annotations

from typing import Annotated

from cadenza_state import WorkflowRecord
from cadenza_workflow import MAX_VERSION, SpecValidationError
from fastapi import APIRouter, Path, Query, Request, Response

from ... import crud, metrics
from ...agent_pins import resolve_agents
from ...auth import CanReadWorkflows, CanWriteWorkflows
from ...documents import ensure_fits_in_event, load_workflow_spec, workflow_document_format
from ...models import WorkflowPublic, WorkflowsPublic, WorkflowSummary, WorkflowVersionsPublic
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_name_cursor, encode_cursor
from ...problems import WorkflowNotFound, problem_responses, spec_problem
from ...query_types import INTEGER_TEXT
from ...versioning import insert_version
from ..deps import SessionDep, SettingsDep

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], responses=problem_responses(422))

_SPEC_BODY = {
    "requestBody": {
        "required": True,
        "description": "A workflow spec: YAML, JSON, or a React Flow `{nodes, edges}` export.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "/v1/schemas/workflow.json"}},
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=WorkflowPublic,
    summary="Register a workflow version",
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra=_SPEC_BODY,
)
async def register_workflow(
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CanWriteWorkflows,
    settings: SettingsDep,
) -> WorkflowPublic:
    """Parse and validate the spec; registering an existing name adds version N+1."""
    fmt = workflow_document_format(request.headers.get("content-type"))
    body = await request.body()
    try:
        spec, spec_dict = await load_workflow_spec(body, fmt)
    except SpecValidationError as exc:
        raise spec_problem(exc, malformed_is_400=True) from None
    ensure_fits_in_event(spec_dict, {}, settings.max_event_bytes)
    # Agents must exist now (422 naming tasks[i].agent); runs pin their versions later.
    async with session.begin():
        try:
            await resolve_agents(session=session, tenant_id=tenant, spec=spec)
        except SpecValidationError as exc:
            raise spec_problem(exc) from None

    async def insert() -> WorkflowRecord:
        record = await crud.insert_next_version(
            session=session, tenant_id=tenant, name=spec.name, spec=spec_dict
        )
        crud.record_audit(
            session=session,
            tenant_id=tenant,
            action="workflow.registered",
            subject=f"workflow:{record.name}@{record.version}",
        )
        return record

    record = await insert_version(session, insert, "workflow_version")
    metrics.WORKFLOW_VERSIONS.labels(tenant).inc()
    response.headers["Location"] = (
        f"{settings.public_url}/v1/workflows/{record.name}/versions/{record.version}"
    )
    return WorkflowPublic.from_record(record)


@router.get(
    "",
    response_model=WorkflowsPublic,
    summary="List workflows (latest version of each)",
    responses=problem_responses(400, 422),
)
async def list_workflows(
    session: SessionDep,
    tenant: CanReadWorkflows,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size."), INTEGER_TEXT] = (
        DEFAULT_PAGE_SIZE
    ),
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
) -> WorkflowsPublic:
    after = decode_name_cursor(cursor) if cursor else None
    records = await crud.list_latest_workflows(
        session=session, tenant_id=tenant, after_name=after, limit=limit + 1
    )
    page = records[:limit]
    more = len(records) > limit
    return WorkflowsPublic(
        items=[WorkflowSummary.from_record(r) for r in page],
        next_cursor=encode_cursor(page[-1].name) if more else None,
    )


NamePath = Annotated[str, Path(description="Workflow name.")]


@router.get(
    "/{name}",
    response_model=WorkflowPublic,
    summary="Get a workflow's latest version",
    responses=problem_responses(404),
)
async def get_latest_workflow(
    name: NamePath, session: SessionDep, tenant: CanReadWorkflows
) -> WorkflowPublic:
    record = await crud.get_workflow(session=session, tenant_id=tenant, name=name)
    if record is None:
        raise WorkflowNotFound(f"no workflow named {name!r}")
    return WorkflowPublic.from_record(record)


@router.get(
    "/{name}/versions",
    response_model=WorkflowVersionsPublic,
    summary="List a workflow's versions",
    responses=problem_responses(404),
)
async def list_versions(
    name: NamePath, session: SessionDep, tenant: CanReadWorkflows
) -> WorkflowVersionsPublic:
    records = await crud.list_workflow_versions(session=session, tenant_id=tenant, name=name)
    if not records:
        raise WorkflowNotFound(f"no workflow named {name!r}")
    return WorkflowVersionsPublic(items=[WorkflowSummary.from_record(r) for r in records])


@router.get(
    "/{name}/versions/{version}",
    response_model=WorkflowPublic,
    summary="Get one version of a workflow",
    responses=problem_responses(404, 422),
)
async def get_workflow_version(
    name: NamePath,
    version: Annotated[
        int, Path(ge=1, le=MAX_VERSION, description="Version number."), INTEGER_TEXT
    ],
    session: SessionDep,
    tenant: CanReadWorkflows,
) -> WorkflowPublic:
    record = await crud.get_workflow(session=session, tenant_id=tenant, name=name, version=version)
    if record is None:
        raise WorkflowNotFound(f"workflow {name!r} has no version {version}")
    return WorkflowPublic.from_record(record)
