"""The envelope: CloudEvents 1.0 attributes + Cadenza extensions around a typed payload.

On Kafka it travels in binary mode: attributes as ``ce_*`` headers, the payload as JSON in
the value. The codec writes and reads the headers directly (the SDK's generic mapping cost
~200 µs to encode and ~350 µs to decode an event); tests/events/test_envelope.py proves the
``cloudevents`` SDK reads what it writes and the other way round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from .errors import DecodeError
from .payloads import DEFAULT_TENANT, PAYLOAD_TYPES, Payload, RunEvent, RunEventBatch, utcnow

P = TypeVar("P", bound=Payload)

_CONTENT_TYPE_BYTES = b"application/json"
# Extension attributes (CloudEvents: lowercase alphanumerics only) travel as `ce_<name>`
# headers: tenantid, planid, taskid, attempt, traceparent, tracestate, partitionkey,
# sentbeforecommit.
_REQUIRED = ("ce_id", "ce_source", "ce_type", "ce_specversion")

SENT_BEFORE_COMMIT_HEADER = ("ce_sentbeforecommit", b"true")
"""The header the orchestrator adds to a task.ready it hands to Kafka before the commit of
its dispatch (its early dispatch): the worker checks that commit before any side effect."""


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
    id: str = field(default_factory=lambda: new_event_id())
    time: datetime = field(default_factory=utcnow)
    traceparent: str | None = None
    tracestate: str | None = None
    partition_key: str | None = None
    """The Kafka key, when it is not the topic's key rule's (CloudEvents' partitioning
    extension, ``partitionkey``): a run's few tasks made ready together share one, so one
    worker fetches them together (``TopicRegistry.key_for``)."""
    sent_before_commit: bool = False
    """Sent before the transaction that wrote it had committed (``sentbeforecommit``; the
    orchestrator's early dispatch): it may never be committed, so a worker makes no side
    effect for it before it reads the commit (``DispatchCheck``)."""

    @property
    def type(self) -> str:
        return self.payload.EVENT_TYPE

    def with_trace(self, traceparent: str | None, tracestate: str | None) -> Envelope[P]:
        # Positional, not dataclasses.replace (which inspects every field on each call):
        # every published event is stamped.
        return Envelope(
            self.payload,
            self.source,
            self.tenant_id,
            self.plan_id,
            self.task_id,
            self.attempt,
            self.subject,
            self.id,
            self.time,
            traceparent,
            tracestate,
            self.partition_key,
            self.sent_before_commit,
        )


def new_event_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` writes it, in a
    third of its time (a plan of 10,000 tasks makes 10,000 events)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


#: The last time written and its text: the events of one transition share their time.
_last_time: tuple[datetime | None, bytes] = (None, b"")


def _rfc3339(moment: datetime) -> bytes:
    """RFC 3339 in UTC with a ``Z``, as the CloudEvents SDK writes ``time``."""
    global _last_time
    last, written = _last_time
    if moment is last:
        return written
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    written = aware.astimezone(UTC).isoformat().replace("+00:00", "Z").encode()
    _last_time = (moment, written)
    return written


def encode(
    env: Envelope[Any], key: str | None
) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Envelope → (key, value, headers) in CloudEvents Kafka binary mode.

    Written directly (``ce_`` headers, the payload as JSON from pydantic-core's serializer)
    rather than through the SDK's generic mapping: the hot path encodes every task twice.
    The conformance suite proves the ``cloudevents`` SDK reads what this writes and that
    this reads what the SDK writes."""
    headers = [
        ("ce_id", env.id.encode()),
        ("ce_source", env.source.encode()),
        ("ce_type", env.payload.EVENT_TYPE.encode()),
        ("ce_specversion", b"1.0"),
        ("ce_time", _rfc3339(env.time)),
        ("content-type", _CONTENT_TYPE_BYTES),
        ("ce_tenantid", env.tenant_id.encode()),
    ]
    if env.subject:
        headers.append(("ce_subject", env.subject.encode()))
    if env.plan_id is not None:
        headers.append(("ce_planid", env.plan_id.encode()))
    if env.task_id is not None:
        headers.append(("ce_taskid", env.task_id.encode()))
    if env.attempt is not None:
        headers.append(("ce_attempt", str(env.attempt).encode()))
    if env.traceparent is not None:
        headers.append(("ce_traceparent", env.traceparent.encode()))
    if env.tracestate is not None:
        headers.append(("ce_tracestate", env.tracestate.encode()))
    if env.partition_key is not None:
        headers.append(("ce_partitionkey", env.partition_key.encode()))
    if env.sent_before_commit:
        headers.append(SENT_BEFORE_COMMIT_HEADER)
    return (
        (key.encode() if key is not None else None),
        env.payload.model_dump_json().encode(),
        headers,
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def decode(message: Message) -> Envelope[Payload]:
    """Raw record → typed envelope; any problem raises ``DecodeError`` naming it."""
    h: dict[str, bytes] = {}
    for name, value in message.headers:
        h[name.lower()] = value
    missing = [n for n in _REQUIRED if not h.get(n)]
    if missing:
        raise DecodeError(f"not a CloudEvent: missing required header(s) {', '.join(missing)}")
    if h["ce_specversion"] != b"1.0":
        raise DecodeError(f"not a CloudEvent 1.0: specversion {_text(h['ce_specversion'])!r}")
    content_type = h.get("content-type")
    if content_type is not None and not content_type.split(b";")[0].strip().endswith(b"json"):
        raise DecodeError(f"not a JSON CloudEvent: content-type {_text(content_type)!r}")
    etype = h["ce_type"].decode("utf-8", "replace")
    model = PAYLOAD_TYPES.get(etype)
    if model is None:
        raise DecodeError(f"unknown event type {etype!r}")
    value = message.value
    if not value.lstrip()[:1] == b"{":
        raise DecodeError(f"{etype}: payload is not a JSON object")
    try:
        payload = model.model_validate_json(value)
    except ValidationError as exc:
        raise DecodeError(f"{etype}: invalid payload: {exc.errors(include_url=False)}") from exc
    attempt = h.get("ce_attempt")
    try:
        attempt_n = int(attempt) if attempt is not None else None
    except ValueError as exc:
        raise DecodeError(f"{etype}: attempt header is not an integer: {_text(attempt)!r}") from exc
    raw_time = h.get("ce_time")
    try:
        moment = datetime.fromisoformat(raw_time.decode()) if raw_time else utcnow()
    except ValueError as exc:
        raise DecodeError(f"{etype}: time header is not RFC 3339: {_text(raw_time)!r}") from exc
    return Envelope(
        payload=payload,
        source=h["ce_source"].decode("utf-8", "replace"),
        tenant_id=_text(h.get("ce_tenantid")) or DEFAULT_TENANT,
        plan_id=_text(h.get("ce_planid")),
        task_id=_text(h.get("ce_taskid")),
        attempt=attempt_n,
        subject=_text(h.get("ce_subject")),
        id=h["ce_id"].decode("utf-8", "replace"),
        time=moment,
        traceparent=_text(h.get("ce_traceparent")),
        tracestate=_text(h.get("ce_tracestate")),
        partition_key=_text(h.get("ce_partitionkey")),
        sent_before_commit=h.get("ce_sentbeforecommit") == b"true",
    )


def batched_event_id(batch_id: str, n: int) -> str:
    """The id of the ``n``-th event of a ``RunEventBatch``: stable, so a redelivered batch
    dedupes event by event."""
    return f"{batch_id}.{n}"


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
            id=batched_event_id(env.id, n),
            task_id=event.task_id,
            attempt=event.data.get("attempt") if event.task_id else None,
            subject=event.task_id or event.run_id,
        )
        for n, event in enumerate(payload.events)
    ]
