"""Request and response bodies of /v1/agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cadenza_state import AgentRecord
from pydantic import BaseModel, Field


class AgentPublic(BaseModel):
    """One immutable version of a registered agent."""

    name: str = Field(description="Agent name (unique per tenant).")
    version: int = Field(description="Version number: 1 for the first registration, then +1.")
    created_at: datetime = Field(description="When this version was registered.")
    spec: dict[str, Any] = Field(
        description="The validated definition as stored: every field, defaults filled in."
    )

    @classmethod
    def from_record(cls, record: AgentRecord) -> AgentPublic:
        return cls(
            name=record.name, version=record.version, created_at=record.created_at, spec=record.spec
        )


class AgentSummary(BaseModel):
    """An agent version without its prompt and schema (listings)."""

    name: str = Field(description="Agent name.")
    version: int = Field(description="Version number.")
    created_at: datetime = Field(description="When this version was registered.")
    description: str | None = Field(default=None, description="The definition's description.")
    role: str | None = Field(default=None, description="The definition's role.")
    model: str = Field(description="`provider:model` it runs on.")

    @classmethod
    def from_record(cls, record: AgentRecord) -> AgentSummary:
        spec = record.spec
        return cls(
            name=record.name,
            version=record.version,
            created_at=record.created_at,
            description=spec.get("description"),
            role=spec.get("role"),
            model=str(spec.get("model", "")),
        )


class AgentsPublic(BaseModel):
    """A page of agents (latest version of each name, by name)."""

    items: list[AgentSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page."
    )


class AgentVersionsPublic(BaseModel):
    """Every version of one agent, newest first."""

    items: list[AgentSummary]
