"""POST /v1/events: the CloudEvents HTTP binding (binary, structured, batch) as an ingress
to the tenant's triggers — the same matching, mapping and exactly-once dedupe as the
trigger service's Kafka consumer (``cadenza_triggers``)."""

from __future__ import annotations

from typing import Any

from cadenza_events import NonRetryableError
from cadenza_runtime import Resources
from cadenza_triggers import (
    BATCH,
    STRUCTURED,
    CloudEvent,
    SpecCache,
    Trigger,
    UndecodableEvent,
    UnsupportedContent,
    from_http,
    load_triggers,
    start_for_event,
)
from cadenza_triggers.cloudevents import MAX_EVENTS_PER_BATCH
from cadenza_triggers.metrics import EVENTS
from fastapi import APIRouter, Request, Response
from opentelemetry import propagate, trace

from ...auth import CanSendEvents
from ...auth.principal import current_actor
from ...auth.quotas import enforce_run_quota
from ...problems import (
    EventRejected,
    FieldProblem,
    MalformedEvent,
    UnsupportedMediaType,
    problem_responses,
)
from ...trigger_models import EventOutcome, EventResult, EventsAccepted
from ..deps import ResourcesDep

router = APIRouter(prefix="/v1/events", tags=["events"])
tracer = trace.get_tracer("cadenza.gateway")
# Parsed workflow specs, shared by requests (immutable versions: safe to keep).
_SPECS = SpecCache()

# A structured CloudEvent: the four required attributes (a missing or empty one is a 400
# `malformed-event`), any other attribute or extension besides.
_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "const": "1.0"},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1},
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "description": "A CloudEvent: binary mode (`ce-specversion`, `ce-id`, `ce-source`, "
        "`ce-type` headers, the data as the body), structured "
        f"(`{STRUCTURED}`) or a batch (`{BATCH}`).",
        "content": {
            STRUCTURED: {"schema": _EVENT},
            BATCH: {"schema": {"type": "array", "items": _EVENT, "maxItems": MAX_EVENTS_PER_BATCH}},
            "application/json": {"schema": {}},
        },
    }
}


def _links(events: list[CloudEvent]) -> list[trace.Link]:
    """The upstream traces of the events (their `traceparent` extension), as span links."""
    links = []
    for event in events[:128]:
        if event.traceparent:
            ctx = propagate.extract({"traceparent": event.traceparent})
            span_ctx = trace.get_current_span(ctx).get_span_context()
            if span_ctx.is_valid:
                links.append(trace.Link(span_ctx))
    return links


@router.post(
    "",
    status_code=201,
    response_model=EventsAccepted,
    summary="Send CloudEvents to the tenant's triggers",
    responses={
        200: {"model": EventsAccepted, "description": "No run started (duplicates, no match)"},
        **problem_responses(400, 413, 415, 422, 429),
    },
    openapi_extra=_BODY,
)
async def send_events(
    request: Request, response: Response, resources: ResourcesDep, tenant: CanSendEvents
) -> EventsAccepted:
    """Each event goes to every enabled trigger of the tenant with `http: true` whose filter
    matches; each (trigger, event) starts at most one run, ever (dedupe key: CloudEvents
    `source` + `id` unless the trigger says otherwise). 201 when a run started, 200 when
    every match was a duplicate (or nothing matched). A trigger refusing an event (failing
    filter or mapping, inputs the workflow refuses) is a 422 naming the trigger; events of
    a batch before it are done, and sending the batch again is safe (duplicates)."""
    body = await request.body()
    try:
        events, mode = from_http(request.headers, body)
    except UnsupportedContent as exc:
        raise UnsupportedMediaType(str(exc), accepted=[STRUCTURED, BATCH, "ce-* headers"]) from None
    except UndecodableEvent as exc:
        raise MalformedEvent(
            str(exc), errors=[FieldProblem(field="", code=exc.code, message=str(exc))]
        ) from None
    EVENTS.labels(tenant, "*", "consumed").inc(len(events))
    await enforce_run_quota(request, tenant, None)
    async with resources.sessions() as session, session.begin():
        triggers = [
            t for t in await load_triggers(session, tenant) if t.spec.enabled and t.spec.http
        ]
    results: list[EventResult] = []
    started = duplicates = 0
    with tracer.start_as_current_span(
        "cadenza.trigger.http",
        links=_links(events),
        attributes={"cadenza.tenant_id": tenant, "cloudevents.count": len(events)},
    ):
        for index, event in enumerate(events):
            outcomes = []
            for trigger in triggers:
                outcome = await _apply(
                    resources, trigger, event, index if mode == "batch" else None
                )
                if outcome is not None:
                    outcomes.append(outcome)
                    if outcome.outcome == "started":
                        started += 1
                    else:
                        duplicates += 1
            results.append(
                EventResult(id=event.id, source=event.source, type=event.type, runs=outcomes)
            )
    if started:
        resources.relay.notify()
    else:
        response.status_code = 200
    return EventsAccepted(mode=mode, events=results, started=started, duplicates=duplicates)


async def _apply(
    resources: Resources, trigger: Trigger, event: CloudEvent, index: int | None
) -> EventOutcome | None:
    labels = (trigger.tenant_id, trigger.name)
    try:
        if not trigger.matches(event):
            return None
        EVENTS.labels(*labels, "matched").inc()
        result = await start_for_event(
            sessions=resources.sessions,
            registry=resources.registry,
            trigger=trigger,
            event=event,
            cache=_SPECS,
            actor=current_actor(),
        )
    except NonRetryableError as exc:
        EVENTS.labels(*labels, "rejected").inc()
        where = f"batch[{index}]" if index is not None else "event"
        message = f"{where} (id {event.id!r}): {exc}"
        raise EventRejected(
            message,
            errors=[
                FieldProblem(
                    field=where if index is not None else "", code=exc.code, message=message
                )
            ],
            trigger=trigger.name,
        ) from None
    EVENTS.labels(*labels, "deduplicated" if result.duplicate else "started").inc()
    return EventOutcome(
        trigger=trigger.name,
        run_id=result.run_id,
        outcome="duplicate" if result.duplicate else "started",
    )
