"""/v1/agents: register agent definitions as immutable, numbered versions and read them."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from cadenza_state import AgentRecord
from cadenza_workflow import (
    BUILTIN_TOOLS,
    MAX_VERSION,
    AgentSpec,
    AgentValidationError,
    ErrorCode,
    SpecError,
    SpecValidationError,
    load_agent,
)
from fastapi import APIRouter, Path, Query, Request, Response
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from ... import crud, metrics
from ...agent_models import AgentPublic, AgentsPublic, AgentSummary, AgentVersionsPublic
from ...auth import CanReadAgents, CanWriteAgents
from ...crud import agents as agents_crud
from ...documents import (
    MAX_VALUE_DEPTH,
    check_yaml_aliases,
    nesting_depth,
    workflow_document_format,
)
from ...pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_name_cursor, encode_cursor
from ...problems import AgentNotFound, problem_responses, spec_problem
from ...query_types import INTEGER_TEXT
from ...settings import GatewaySettings
from ...versioning import insert_version
from ..deps import SessionDep, SettingsDep

log = logging.getLogger("cadenza.gateway")
tracer = trace.get_tracer("cadenza.gateway")
router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=problem_responses(422))

_AGENT_BODY = {
    "requestBody": {
        "required": True,
        "description": "An agent definition, YAML or JSON (see /v1/schemas/agent.json).",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "/v1/schemas/agent.json"}},
        },
    }
}


def known_tools(settings: GatewaySettings) -> frozenset[str]:
    """Tool names an agent may list: the workers' built-ins plus the configured extras."""
    return BUILTIN_TOOLS | frozenset(settings.agent_tools)


def _syntax(detail: str) -> AgentValidationError:
    return AgentValidationError(
        [SpecError(field="", code=ErrorCode.INVALID_SYNTAX, message=f"agent: {detail}")]
    )


def _load(body: bytes, fmt: str | None, tools: frozenset[str]) -> tuple[AgentSpec, dict[str, Any]]:
    content_type = {"json": "application/json", "yaml": "application/yaml"}.get(fmt or "")
    try:
        text = body.decode("utf-8-sig", errors="replace")
        if fmt != "json" and not text.lstrip().startswith(("{", "[")):
            check_yaml_aliases(text)
        agent = load_agent(body, content_type=content_type, known_tools=tools)
        data = agent.to_dict()
    except RecursionError:
        raise _syntax("the document nests too deeply") from None
    except ValueError as exc:  # pydantic refuses to serialize absurd depths
        if "depth" not in str(exc) and "recursion" not in str(exc):
            raise
        raise _syntax("the document nests too deeply") from None
    depth = nesting_depth(data)
    if depth > MAX_VALUE_DEPTH:
        raise _syntax(f"the document nests {depth} levels deep (limit {MAX_VALUE_DEPTH})")
    return agent, data


async def _check_handoffs(session: AsyncSession, tenant: str, agent: AgentSpec) -> None:
    """Every handoff target must be a registered agent of the tenant (any version)."""
    if not agent.handoffs:
        return
    async with session.begin():
        found = await agents_crud.latest_agent_versions(
            session=session, tenant_id=tenant, names=set(agent.handoffs)
        )
    errors = [
        SpecError(
            field=f"handoffs[{i}]",
            code=ErrorCode.UNKNOWN_AGENT,
            message=f"field handoffs[{i}]: no agent named '{target}' is registered "
            "(register the target first)",
        )
        for i, target in enumerate(agent.handoffs)
        if target not in found
    ]
    if errors:
        raise spec_problem(AgentValidationError(errors))


@router.post(
    "",
    status_code=201,
    response_model=AgentPublic,
    summary="Register an agent version",
    responses=problem_responses(400, 413, 415, 422),
    openapi_extra=_AGENT_BODY,
)
async def register_agent(
    request: Request,
    response: Response,
    session: SessionDep,
    tenant: CanWriteAgents,
    settings: SettingsDep,
) -> AgentPublic:
    """Validate the definition (tools known, handoff targets registered, output_schema a
    valid JSON Schema); registering an existing name adds version N+1."""
    fmt = workflow_document_format(request.headers.get("content-type"), what="an agent")
    body = await request.body()
    with tracer.start_as_current_span("cadenza.gateway.load_agent") as span:
        try:
            agent, data = await run_in_threadpool(_load, body, fmt, known_tools(settings))
        except SpecValidationError as exc:
            raise spec_problem(exc, malformed_is_400=True) from None
        span.set_attribute("cadenza.agent.name", agent.name)
    await _check_handoffs(session, tenant, agent)

    async def insert() -> AgentRecord:
        record = await agents_crud.insert_next_agent_version(
            session=session, tenant_id=tenant, name=agent.name, spec=data
        )
        crud.record_audit(
            session=session,
            tenant_id=tenant,
            action="agent.registered",
            subject=f"agent:{record.name}@{record.version}",
        )
        return record

    record = await insert_version(session, insert, "agent_version")
    metrics.AGENT_VERSIONS.labels(tenant).inc()
    log.info("agent %s@%s registered, tenant %s", record.name, record.version, tenant)
    response.headers["Location"] = (
        f"{settings.public_url}/v1/agents/{record.name}/versions/{record.version}"
    )
    return AgentPublic.from_record(record)


@router.get(
    "",
    response_model=AgentsPublic,
    summary="List agents (latest version of each)",
    responses=problem_responses(400, 422),
)
async def list_agents(
    session: SessionDep,
    tenant: CanReadAgents,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size."), INTEGER_TEXT] = (
        DEFAULT_PAGE_SIZE
    ),
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
) -> AgentsPublic:
    after = decode_name_cursor(cursor) if cursor else None
    records = await agents_crud.list_latest_agents(
        session=session, tenant_id=tenant, after_name=after, limit=limit + 1
    )
    page = records[:limit]
    more = len(records) > limit
    return AgentsPublic(
        items=[AgentSummary.from_record(r) for r in page],
        next_cursor=encode_cursor(page[-1].name) if more else None,
    )


NamePath = Annotated[str, Path(description="Agent name.")]


@router.get(
    "/{name}",
    response_model=AgentPublic,
    summary="Get an agent's latest version",
    responses=problem_responses(404),
)
async def get_latest_agent(
    name: NamePath, session: SessionDep, tenant: CanReadAgents
) -> AgentPublic:
    record = await agents_crud.get_agent(session=session, tenant_id=tenant, name=name)
    if record is None:
        raise AgentNotFound(f"no agent named {name!r}")
    return AgentPublic.from_record(record)


@router.get(
    "/{name}/versions",
    response_model=AgentVersionsPublic,
    summary="List an agent's versions",
    responses=problem_responses(404),
)
async def list_agent_versions(
    name: NamePath, session: SessionDep, tenant: CanReadAgents
) -> AgentVersionsPublic:
    records = await agents_crud.list_agent_versions(session=session, tenant_id=tenant, name=name)
    if not records:
        raise AgentNotFound(f"no agent named {name!r}")
    return AgentVersionsPublic(items=[AgentSummary.from_record(r) for r in records])


@router.get(
    "/{name}/versions/{version}",
    response_model=AgentPublic,
    summary="Get one version of an agent",
    responses=problem_responses(404, 422),
)
async def get_agent_version(
    name: NamePath,
    version: Annotated[
        int, Path(ge=1, le=MAX_VERSION, description="Version number."), INTEGER_TEXT
    ],
    session: SessionDep,
    tenant: CanReadAgents,
) -> AgentPublic:
    record = await agents_crud.get_agent(
        session=session, tenant_id=tenant, name=name, version=version
    )
    if record is None:
        raise AgentNotFound(f"agent {name!r} has no version {version}")
    return AgentPublic.from_record(record)
