"""Starting a run for an event (trigger) or a tick (schedule), exactly once.

Exactly once per event: the dedupe row (tenant, trigger, dedupe key) is inserted in the
transaction that creates the run and stages its ``plan.requested`` (the shared
``cadenza_runtime.create_run``), so a redelivered event, a replay, a crash between the
commit and the offset commit, or two consumers racing all hit the unique constraint and
start nothing. Outages (database away) propagate: the consumer pauses and retries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cadenza_events import TopicRegistry
from cadenza_runtime import create_run
from cadenza_runtime.agent_pins import resolve_agents
from cadenza_state import TriggeredEventRecord, TriggerRecord, WorkflowRecord
from cadenza_workflow import SpecValidationError, WorkflowSpec, parse_spec, resolve_inputs
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .cloudevents import CloudEvent
from .matching import InvalidInputs, Trigger, WorkflowMissing

SOURCE = "/cadenza/trigger"


@dataclass(frozen=True)
class Started:
    """What one trigger did with one event."""

    trigger: str
    run_id: str
    duplicate: bool


@dataclass(frozen=True)
class Prepared:
    """A run ready to insert: the pinned spec and the checked inputs."""

    workflow_name: str
    workflow_version: int
    spec: dict[str, Any]
    inputs: dict[str, Any]


class SpecCache:
    """Parsed specs by workflow row id: versions are immutable, so parsing once is enough
    (a burst of 1,000 events parses its workflow once, not 1,000 times)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._specs: dict[uuid.UUID, WorkflowSpec] = {}

    def parsed(self, record: WorkflowRecord) -> WorkflowSpec:
        spec = self._specs.get(record.id)
        if spec is None:
            spec = parse_spec(record.spec)
            if len(self._specs) >= self._size:
                self._specs.pop(next(iter(self._specs)))
            self._specs[record.id] = spec
        return spec


async def prepare_run(
    *,
    session: AsyncSession,
    tenant_id: str,
    workflow: str,
    inputs: dict[str, Any],
    cache: SpecCache,
    who: str,
) -> Prepared:
    """The registered workflow (``name[@version]``), the inputs checked against it and its
    agents pinned — as POST /v1/runs does. WorkflowMissing / InvalidInputs otherwise."""
    name, _, version_text = workflow.partition("@")
    stmt = select(WorkflowRecord).where(
        WorkflowRecord.tenant_id == tenant_id, WorkflowRecord.name == name
    )
    if version_text:
        stmt = stmt.where(WorkflowRecord.version == int(version_text))
    else:
        stmt = stmt.order_by(WorkflowRecord.version.desc()).limit(1)
    record = await session.scalar(stmt)
    if record is None:
        raise WorkflowMissing(f"{who}: workflow {workflow!r} is not registered")
    spec = cache.parsed(record)
    try:
        resolved = resolve_inputs(spec, inputs)
        pins = await resolve_agents(session=session, tenant_id=tenant_id, spec=spec)
    except SpecValidationError as exc:
        details = "; ".join(e.message for e in exc.errors)
        raise InvalidInputs(f"{who}: the mapped inputs are refused: {details}") from None
    return Prepared(
        workflow_name=record.name,
        workflow_version=record.version,
        spec=pins.apply(record.spec) if pins.versions else record.spec,
        inputs=resolved,
    )


def started_by(trigger: Trigger, event: CloudEvent) -> dict[str, Any]:
    """What the run records about the event that started it (API and timeline)."""
    origin: dict[str, Any] = {
        "kind": "trigger",
        "trigger": trigger.name,
        "trigger_version": trigger.version,
        "event_id": event.id,
        "event_source": event.source,
        "event_type": event.type,
        "via": "kafka" if event.kafka is not None else "http",
    }
    if event.kafka is not None:
        origin.update(
            topic=event.kafka["topic"],
            partition=event.kafka["partition"],
            offset=event.kafka["offset"],
        )
    return origin


async def existing_run(session: AsyncSession, trigger: Trigger, key: str) -> str | None:
    return await session.scalar(
        select(TriggeredEventRecord.run_id).where(
            TriggeredEventRecord.tenant_id == trigger.tenant_id,
            TriggeredEventRecord.trigger_name == trigger.name,
            TriggeredEventRecord.dedupe_key == key,
        )
    )


async def start_for_event(
    *,
    sessions: async_sessionmaker[AsyncSession],
    registry: TopicRegistry,
    trigger: Trigger,
    event: CloudEvent,
    cache: SpecCache,
    actor: str,
) -> Started:
    """Start ``trigger``'s run for ``event`` unless its dedupe key already started one."""
    key = trigger.dedupe_key(event)
    inputs = trigger.map_inputs(event)
    async with sessions() as session:
        async with session.begin():
            # The cheap path for a replay: no spec work when the event is known.
            known = await existing_run(session, trigger, key)
            if known is not None:
                return Started(trigger.name, known, duplicate=True)
            prepared = await prepare_run(
                session=session,
                tenant_id=trigger.tenant_id,
                workflow=trigger.spec.workflow,
                inputs=inputs,
                cache=cache,
                who=f"trigger {trigger.name!r}",
            )
        run_id = str(uuid.uuid4())
        try:
            async with session.begin():
                session.add(
                    TriggeredEventRecord(
                        tenant_id=trigger.tenant_id,
                        trigger_name=trigger.name,
                        dedupe_key=key,
                        run_id=run_id,
                        event_id=event.id[:512],
                    )
                )
                # Flushed with the run: a duplicate key fails the whole transaction.
                await create_run(
                    session=session,
                    registry=registry,
                    tenant_id=trigger.tenant_id,
                    workflow_name=prepared.workflow_name,
                    workflow_version=prepared.workflow_version,
                    spec=prepared.spec,
                    inputs=prepared.inputs,
                    idempotency_key=None,
                    actor=actor,
                    source=SOURCE,
                    started_by=started_by(trigger, event),
                    run_id=run_id,
                )
        except IntegrityError:
            # Another consumer (or request) committed this event's run first.
            async with session.begin():
                winner = await existing_run(session, trigger, key)
            if winner is None:
                raise
            return Started(trigger.name, winner, duplicate=True)
    return Started(trigger.name, run_id, duplicate=False)


async def load_triggers(session: AsyncSession, tenant_id: str | None = None) -> list[Trigger]:
    """The version in force of every trigger (of one tenant, or of all), enabled or not."""
    latest = select(
        TriggerRecord.tenant_id,
        TriggerRecord.name,
        func.max(TriggerRecord.version).label("version"),
    ).group_by(TriggerRecord.tenant_id, TriggerRecord.name)
    if tenant_id is not None:
        latest = latest.where(TriggerRecord.tenant_id == tenant_id)
    sub = latest.subquery()
    stmt = select(TriggerRecord).join(
        sub,
        (TriggerRecord.tenant_id == sub.c.tenant_id)
        & (TriggerRecord.name == sub.c.name)
        & (TriggerRecord.version == sub.c.version),
    )
    return [Trigger.of(r) for r in (await session.scalars(stmt)).all()]
