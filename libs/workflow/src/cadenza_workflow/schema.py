"""The published JSON Schema of the workflow spec (served at ``/v1/schemas/workflow.json``)."""

from __future__ import annotations

from typing import Any

from .spec import WorkflowSpec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
WORKFLOW_SCHEMA_ID = "urn:cadenza:schema:workflow:v1"
"""Default ``$id``; the gateway passes its public URL of the schema instead."""


def workflow_json_schema(schema_id: str = WORKFLOW_SCHEMA_ID) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) for a native workflow document, generated from
    :class:`WorkflowSpec`; every property carries a description.

    The schema checks shape only; :func:`cadenza_workflow.validate_spec` checks references,
    cycles and expressions. A top-level ``$schema`` key is allowed (editors use it).
    """
    generated = WorkflowSpec.model_json_schema(by_alias=True, mode="validation")
    return published_schema(generated, schema_id, "Cadenza workflow")


def published_schema(generated: dict[str, Any], schema_id: str, title: str) -> dict[str, Any]:
    """A pydantic-generated schema as Cadenza publishes it: dialect, ``$id``, title, and an
    optional top-level ``$schema`` property for editors."""
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id, **generated}
    schema["title"] = title
    schema["properties"] = {
        "$schema": {
            "type": "string",
            "title": "$schema",
            "description": "URI of this JSON Schema, for editors; ignored by Cadenza.",
        },
        **generated["properties"],
    }
    return schema
