"""/v1/schemas: published JSON Schemas (editors validate workflow files against them)."""

from __future__ import annotations

import functools
import json

from cadenza_workflow import agent_json_schema, workflow_json_schema
from fastapi import APIRouter, Request, Response

from ..deps import SettingsDep, public_base_url

router = APIRouter(prefix="/v1/schemas", tags=["schemas"])

SCHEMA_MEDIA_TYPE = "application/schema+json"


@functools.lru_cache(maxsize=8)
def _workflow_schema(schema_id: str) -> bytes:
    return json.dumps(workflow_json_schema(schema_id=schema_id), indent=2).encode()


@router.get(
    "/workflow.json",
    summary="JSON Schema of the workflow spec",
    response_class=Response,
    responses={200: {"content": {SCHEMA_MEDIA_TYPE: {}}, "description": "JSON Schema"}},
)
async def workflow_schema(request: Request, settings: SettingsDep) -> Response:
    """Draft 2020-12; `$id` is this URL. It checks shape only: references, cycles and
    expressions are checked when a workflow is registered."""
    schema_id = f"{public_base_url(request, settings)}/v1/schemas/workflow.json"
    return Response(
        _workflow_schema(schema_id),
        media_type=SCHEMA_MEDIA_TYPE,
        headers={"Cache-Control": "public, max-age=3600"},
    )


@functools.lru_cache(maxsize=8)
def _agent_schema(schema_id: str) -> bytes:
    return json.dumps(agent_json_schema(schema_id=schema_id), indent=2).encode()


@router.get(
    "/agent.json",
    summary="JSON Schema of an agent definition",
    response_class=Response,
    responses={200: {"content": {SCHEMA_MEDIA_TYPE: {}}, "description": "JSON Schema"}},
)
async def agent_schema(request: Request, settings: SettingsDep) -> Response:
    """Draft 2020-12; `$id` is this URL. It checks shape only: unique tools, known tools,
    registered handoff targets and a valid output_schema are checked on registration."""
    schema_id = f"{public_base_url(request, settings)}/v1/schemas/agent.json"
    return Response(
        _agent_schema(schema_id),
        media_type=SCHEMA_MEDIA_TYPE,
        headers={"Cache-Control": "public, max-age=3600"},
    )
