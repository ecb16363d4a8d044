"""Response models of /v1/triggers, /v1/schedules and /v1/events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from cadenza_state import ScheduleRecord, TriggerRecord
from cadenza_state import utcnow as _utcnow
from cadenza_triggers import ScheduleSpec, upcoming
from pydantic import BaseModel, Field

NEXT_FIRES_SHOWN = 5


class TriggerPublic(BaseModel):
    """One immutable version of a trigger; the latest version is the one in force."""

    name: str
    version: int
    tenant_id: str = Field(
        description="The tenant its runs belong to (the one that registered it)."
    )
    enabled: bool
    created_at: datetime
    spec: dict[str, Any]

    @classmethod
    def from_record(cls, record: TriggerRecord) -> TriggerPublic:
        return cls(
            name=record.name,
            version=record.version,
            tenant_id=record.tenant_id,
            enabled=bool(record.spec.get("enabled", True)),
            created_at=record.created_at,
            spec=record.spec,
        )


class TriggersPublic(BaseModel):
    items: list[TriggerPublic]
    next_cursor: str | None = None


class SchedulePublic(BaseModel):
    """A cron schedule and its next ticks."""

    id: str
    name: str
    paused: bool
    spec: dict[str, Any]
    next_fire_at: datetime | None = Field(description="The next tick a scheduler will fire.")
    next_fires: list[datetime] = Field(
        description=f"The next {NEXT_FIRES_SHOWN} ticks (from now; empty when paused or ended)."
    )
    last_fire_at: datetime | None
    last_run_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> SchedulePublic:
        spec = ScheduleSpec.model_validate(record.spec)
        ended = record.paused or record.next_fire_at is None
        fires = [] if ended else upcoming(spec, _utcnow(), NEXT_FIRES_SHOWN)
        return cls(
            id=record.id,
            name=record.name,
            paused=record.paused,
            spec=record.spec,
            next_fire_at=record.next_fire_at,
            next_fires=fires,
            last_fire_at=record.last_fire_at,
            last_run_id=record.last_run_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class SchedulesPublic(BaseModel):
    items: list[SchedulePublic]


class EventOutcome(BaseModel):
    """What one trigger did with one event."""

    trigger: str
    run_id: str
    outcome: Literal["started", "duplicate"]


class EventResult(BaseModel):
    id: str
    source: str
    type: str
    runs: list[EventOutcome] = Field(
        description="One entry per matching trigger; empty when no trigger matched."
    )


class EventsAccepted(BaseModel):
    """The answer of POST /v1/events: per event, the runs it started or found (duplicate)."""

    mode: Literal["binary", "structured", "batch"]
    events: list[EventResult]
    started: int = Field(description="Runs started by this request.")
    duplicates: int = Field(description="Events (per trigger) that had already started a run.")
