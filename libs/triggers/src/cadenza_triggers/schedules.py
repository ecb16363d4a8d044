"""Cron schedules: the spec, the next fire times (croniter, in the schedule's time zone)
and what to fire after downtime (the catch-up policy) — pure functions, unit-tested; the
scheduler loop (services/trigger) claims due schedules in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cadenza_workflow.json_types import json_integers
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .spec import NAME_PATTERN, WORKFLOW_REF_PATTERN, check_workflow_ref

MAX_CATCH_UP = 1000


class Overlap(StrEnum):
    """What a tick does while the schedule's previous run is unfinished."""

    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class CatchUp(StrEnum):
    """What the scheduler fires for ticks it missed (scheduler down, schedule resumed)."""

    NONE = "none"
    """Only a tick still within the grace period; older ones are skipped."""
    LAST = "last"
    """The most recent missed tick, once."""
    ALL = "all"
    """Every missed tick, oldest first, at most ``catch_up_max`` (the most recent ones)."""


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _integers = json_integers("catch_up_max")

    name: str = Field(pattern=NAME_PATTERN, description="Unique per tenant.")
    cron: str = Field(
        min_length=1,
        description="A cron expression (5 fields, or 6 with seconds last: `* * * * * */5`).",
    )
    timezone: str = Field(default="UTC", description="IANA time zone the cron is read in.")
    workflow: str = Field(
        json_schema_extra={"pattern": WORKFLOW_REF_PATTERN},
        description="`name` (latest version at each tick) or `name@version`.",
    )
    inputs: dict[str, Any] = Field(default_factory=dict)
    start_at: datetime | None = Field(default=None, description="No tick before this time.")
    end_at: datetime | None = Field(default=None, description="No tick after this time.")
    overlap: Overlap = Overlap.SKIP
    catch_up: CatchUp = CatchUp.NONE
    catch_up_max: int = Field(default=10, ge=1, le=MAX_CATCH_UP)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if not croniter.is_valid(cron):
            raise ValueError(f"{cron!r} is not a cron expression")
        return cron

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, tz: str) -> str:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{tz!r} is not an IANA time zone") from None
        return tz

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, ref: str) -> str:
        return check_workflow_ref(ref)

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, at: datetime | None) -> datetime | None:
        if at is not None and at.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2027-01-01T00:00:00Z)")
        return at

    def workflow_ref(self) -> tuple[str, int | None]:
        name, _, version = self.workflow.partition("@")
        return name, int(version) if version else None

    @model_validator(mode="after")
    def _window(self) -> ScheduleSpec:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


def next_fire(spec: ScheduleSpec, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (and not before ``start_at``), in UTC; None
    when the schedule has ended."""
    if spec.start_at is not None and after < spec.start_at:
        after = spec.start_at - timedelta(microseconds=1)
    local = after.astimezone(ZoneInfo(spec.timezone))
    tick: datetime = croniter(spec.cron, local).get_next(datetime)
    tick = tick.astimezone(UTC)
    if spec.end_at is not None and tick > spec.end_at:
        return None
    return tick


def upcoming(spec: ScheduleSpec, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` ticks after ``after`` (fewer when the schedule ends)."""
    ticks: list[datetime] = []
    at: datetime | None = after
    while at is not None and len(ticks) < count:
        at = next_fire(spec, at)
        if at is not None:
            ticks.append(at)
    return ticks


def due_ticks(
    spec: ScheduleSpec, first_due: datetime, now: datetime, grace: timedelta
) -> tuple[list[datetime], int, datetime | None]:
    """What to fire now: (ticks to fire oldest first, how many missed ticks are skipped, the
    next tick after ``now``). ``first_due`` is the schedule's stored next tick (<= now).

    A tick within ``grace`` of now is on time and always fires; older ones are missed and
    the catch-up policy decides. Counting stops after MAX_CATCH_UP + 1 ticks so a schedule
    down for a year costs no more than one that was down for a minute."""
    due: list[datetime] = []
    skipped_beyond = 0
    at: datetime | None = first_due
    while at is not None and at <= now:
        due.append(at)
        if len(due) > MAX_CATCH_UP:
            due.pop(0)
            skipped_beyond += 1
        at = next_fire(spec, at)
    following = at if at is not None and at > now else next_fire(spec, now)
    on_time = [t for t in due if now - t <= grace]
    missed = [t for t in due if now - t > grace]
    if spec.catch_up is CatchUp.ALL:
        fire = missed[-spec.catch_up_max :] + on_time
    elif spec.catch_up is CatchUp.LAST and missed and not on_time:
        fire = missed[-1:]
    else:
        fire = on_time
    skipped = len(due) - len(fire) + skipped_beyond
    return fire, skipped, following
