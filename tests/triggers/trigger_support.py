"""Helpers shared by the trigger tests."""

from __future__ import annotations

from cadenza_runtime import Resources
from cadenza_state import WorkflowRecord

ECHO_SPEC = {
    "name": "echo",
    "inputs": {"n": {"type": "integer"}},
    "tasks": [{"id": "t", "tool": "transform", "with": {"n": "${{ inputs.n }}"}}],
}


async def add_workflow(resources: Resources, tenant: str = "default") -> None:
    """Register ``echo`` v1 straight in the database (a stored spec is a validated one)."""
    async with resources.sessions() as session, session.begin():
        session.add(WorkflowRecord(tenant_id=tenant, name="echo", version=1, spec=ECHO_SPEC))
