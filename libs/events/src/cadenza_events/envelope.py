"""The envelope: CloudEvents 1.0 attributes + Cadenza extensions around a typed payload.

On Kafka it travels in binary mode: attributes as ``ce_*`` headers, the payload as JSON in
the value. Encoding goes through the CloudEvents SDK so the headers follow the spec exactly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from .errors import DecodeError
from .payloads import DEFAULT_TENANT, PAYLOAD_TYPES, Payload, RunEvent, RunEventBatch, utcnow

P = TypeVar("P", bound=Payload)

_FORMAT = JSONFormat()
_CONTENT_TYPE = "application/json"
# Extension attribute names (CloudEvents: lowercase alphanumerics only).
_EXTENSIONS = ("tenantid", "planid", "taskid", "attempt", "traceparent", "tracestate")


@dataclass(frozen=True, slots=True)
class Message:
    """A raw record as a transport sees it (Kafka or the in-process bus)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class Envelope(Generic[P]):
    """One event: who/what/when (CloudEvents) + tenant/plan/task/attempt/trace + payload."""

    payload: P
    source: str
    tenant_id: str = DEFAULT_TENANT
    plan_id: str | None = None
    task_id: str | None = None
    attempt: int | None = None
    subject: str | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: datetime = field(default_factory=utcnow)
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def type(self) -> str:
        return self.payload.EVENT_TYPE

    def with_trace(self, traceparent: str | None, tracestate: str | None) -> Envelope[P]:
        return replace(self, traceparent=traceparent, tracestate=tracestate)


def encode(
    env: Envelope[Any], key: str | None
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Envelope → (key, value, headers) in CloudEvents Kafka binary mode."""
    attrs: dict[str, Any] = {
        "id": env.id,
        "source": env.source,
        "type": env.type,
        "specversion": "1.0",
        "time": env.time,
        "datacontenttype": _CONTENT_TYPE,
        "tenantid": env.tenant_id,
    }
    if env.subject:
        attrs["subject"] = env.subject
    for name, value in (
        ("planid", env.plan_id),
        ("taskid", env.task_id),
        ("attempt", env.attempt),
        ("traceparent", env.traceparent),
        ("tracestate", env.tracestate),
    ):
        if value is not None:
            attrs[name] = str(value)
    event = CloudEvent(attributes=attrs, data=env.payload.model_dump_json().encode())
    msg = ce_kafka.to_binary(event, _FORMAT, key_mapper=lambda _e: key)
    raw_key = msg.key.encode() if isinstance(msg.key, str) else msg.key
    return raw_key, msg.value, list(msg.headers.items())


def decode(message: Message) -> Envelope[Payload]:
    """Raw record → typed envelope; any problem raises ``DecodeError`` naming it."""
    try:
        event = ce_kafka.from_binary(
            ce_kafka.KafkaMessage(
                headers=dict(message.headers), key=message.key, value=message.value
            ),
            _FORMAT,
            CloudEvent,
        )
    except Exception as exc:  # the SDK raises several unrelated types
        raise DecodeError(f"not a CloudEvent: {type(exc).__name__}: {exc}") from exc
    etype = event.get_type()
    model = PAYLOAD_TYPES.get(etype)
    if model is None:
        raise DecodeError(f"unknown event type {etype!r}")
    data = event.get_data()
    if not isinstance(data, dict):
        raise DecodeError(f"{etype}: payload is not a JSON object")
    try:
        payload = model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(f"{etype}: invalid payload: {exc.errors(include_url=False)}") from exc
    attempt = event.get_extension("attempt")
    try:
        attempt_n = int(attempt) if attempt is not None else None
    except ValueError as exc:
        raise DecodeError(f"{etype}: attempt header is not an integer: {attempt!r}") from exc
    time = event.get_time()
    return Envelope(
        payload=payload,
        source=event.get_source(),
        tenant_id=event.get_extension("tenantid") or DEFAULT_TENANT,
        plan_id=event.get_extension("planid"),
        task_id=event.get_extension("taskid"),
        attempt=attempt_n,
        subject=event.get_subject(),
        id=event.get_id(),
        time=time if time is not None else utcnow(),
        traceparent=event.get_extension("traceparent"),
        tracestate=event.get_extension("tracestate"),
    )


def unbatch(env: Envelope[Any]) -> list[Envelope[RunEvent]]:
    """The run events an envelope carries: itself for a ``RunEvent``; each event of a
    ``RunEventBatch`` as its own envelope, with a stable id (``{batch id}.{n}``) so a
    redelivered batch dedupes event by event; nothing for other payloads."""
    payload = env.payload
    if isinstance(payload, RunEvent):
        return [env]
    if not isinstance(payload, RunEventBatch):
        return []
    return [
        replace(
            env,
            payload=event,
            id=f"{env.id}.{n}",
            task_id=event.task_id,
            attempt=event.data.get("attempt") if event.task_id else None,
            subject=event.task_id or event.run_id,
        )
        for n, event in enumerate(payload.events)
    ]
