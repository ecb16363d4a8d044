"""Reading upstream events: CloudEvents in Kafka binary mode (``ce_*`` headers), structured
mode (``application/cloudevents+json``) and plain JSON records, and the CloudEvents HTTP
binding (binary, structured and ``application/cloudevents-batch+json``).

Anything else (bytes that are not JSON, a content type we cannot read, a CloudEvent missing
a required attribute) is an :class:`UndecodableEvent`: the consumer dead-letters it with
this reason and carries on.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from cadenza_events import DecodeError, Envelope, Message
from cadenza_events.payloads import Payload
from pydantic import Field

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
REQUIRED = ("id", "source", "type", "specversion")
CORE = frozenset(
    {*REQUIRED, "subject", "time", "datacontenttype", "dataschema", "data", "data_base64"}
)
MAX_EVENTS_PER_BATCH = 1000


class UndecodableEvent(DecodeError):
    code = "undecodable_event"


class UnsupportedContent(UndecodableEvent):
    """The content type (of the record, the request or the event's data) is not one we read."""

    code = "unsupported_content_type"


class CloudEvent(Payload):
    """One upstream event, whatever its wire format; where it came from in ``kafka``."""

    EVENT_TYPE: ClassVar[str] = "cadenza.upstream.event.v1"
    id: str
    source: str
    type: str
    specversion: str = "1.0"
    subject: str | None = None
    time: str | None = None
    datacontenttype: str | None = None
    data: Any = None
    extensions: dict[str, str] = Field(default_factory=dict)
    mode: str = Field(description="binary, structured, plain (Kafka) or http-*.")
    kafka: dict[str, Any] | None = Field(
        default=None, description="topic, partition, offset, key of the record."
    )

    def context(self) -> dict[str, Any]:
        """What a trigger's expressions see."""
        event = self.model_dump(exclude={"mode"})
        return {"event": event, "data": self.data}

    @property
    def traceparent(self) -> str | None:
        return self.extensions.get("traceparent")

    @property
    def tracestate(self) -> str | None:
        return self.extensions.get("tracestate")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return kind in ("", "application/json", "text/json") or kind.endswith("+json")


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UndecodableEvent(f"{what} is not JSON: {exc}") from None


def _data(raw: bytes, content_type: str | None) -> Any:
    """The event's data from a binary-mode body: JSON, or text; other media types are not
    something a workflow input can hold, so they are refused."""
    if not raw:
        return None
    if is_json(content_type):
        return _json(raw, "the event's data")
    if media_type(content_type).startswith("text/"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UndecodableEvent("text data is not UTF-8") from None
    raise UnsupportedContent(
        f"content type {media_type(content_type)!r} is not supported: send JSON or text data"
    )


def from_attributes(
    attrs: Mapping[str, Any], *, mode: str, kafka: dict[str, Any] | None = None
) -> CloudEvent:
    """A CloudEvent from its attribute map (structured JSON, or headers with the data set)."""
    missing = [a for a in REQUIRED if not attrs.get(a)]
    if missing:
        raise UndecodableEvent(f"not a CloudEvent: missing attribute {missing[0]!r}")
    if str(attrs["specversion"]) != "1.0":
        raise UndecodableEvent(f"CloudEvents specversion {attrs['specversion']!r} is not 1.0")
    data = attrs.get("data")
    if "data_base64" in attrs:
        try:
            raw = base64.b64decode(str(attrs["data_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise UndecodableEvent("data_base64 is not base64") from None
        data = _data(raw, attrs.get("datacontenttype"))
    return CloudEvent(
        id=str(attrs["id"]),
        source=str(attrs["source"]),
        type=str(attrs["type"]),
        specversion="1.0",
        subject=attrs.get("subject"),
        time=attrs.get("time"),
        datacontenttype=attrs.get("datacontenttype"),
        data=data,
        extensions={k: str(v) for k, v in attrs.items() if k not in CORE and v is not None},
        mode=mode,
        kafka=kafka,
    )


def from_structured(raw: bytes, *, mode: str, kafka: dict[str, Any] | None = None) -> CloudEvent:
    body = _json(raw, "a structured CloudEvent")
    if not isinstance(body, dict):
        raise UndecodableEvent("a structured CloudEvent must be a JSON object")
    return from_attributes(body, mode=mode, kafka=kafka)


PlainTypes = Callable[[str], str | None]
"""topic → the `type` plain JSON records on it get (None: plain records are refused)."""


def from_kafka(message: Message, plain_type: PlainTypes) -> CloudEvent:
    """Read a Kafka record as a CloudEvent (binary, structured or plain JSON)."""
    kafka = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key.decode("utf-8", "replace") if message.key is not None else None,
    }
    headers = {k.lower(): v.decode("utf-8", "replace") for k, v in message.headers}
    content_type = headers.get("content-type")
    if "ce_specversion" in headers:
        attrs: dict[str, Any] = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
        attrs["datacontenttype"] = content_type
        attrs["data"] = _data(message.value, content_type)
        return from_attributes(attrs, mode="binary", kafka=kafka)
    kind = media_type(content_type)
    if kind == STRUCTURED:
        return from_structured(message.value, mode="structured", kafka=kafka)
    if kind == BATCH:
        raise UndecodableEvent("CloudEvents batches are not allowed on Kafka (one event a record)")
    if not is_json(content_type):
        raise UnsupportedContent(
            f"content type {kind!r} is not supported: send a CloudEvent or a JSON record"
        )
    event_type = plain_type(message.topic)
    if event_type is None:
        raise UndecodableEvent(
            f"a plain record on {message.topic!r} (no CloudEvents headers) and no trigger of "
            "the topic sets `plain_type`"
        )
    # A plain record's identity is its place in the log: a replay finds the same key.
    return CloudEvent(
        id=f"{message.partition}:{message.offset}",
        source=f"kafka://{message.topic}",
        type=event_type,
        datacontenttype="application/json",
        data=_json(message.value, "the record"),
        extensions={k: v for k, v in headers.items() if k in ("traceparent", "tracestate")},
        mode="plain",
        kafka=kafka,
    )


def kafka_decoder(plain_type: PlainTypes) -> Callable[[Message], Envelope[Any]]:
    """A consumer decoder: the record as an envelope whose payload is the CloudEvent (the
    envelope carries the upstream ``traceparent``, so the consumer span continues it)."""

    def decode(message: Message) -> Envelope[Any]:
        event = from_kafka(message, plain_type)
        return Envelope(
            payload=event,
            source=event.source,
            id=event.id,
            subject=event.subject,
            traceparent=event.traceparent,
            tracestate=event.tracestate,
        )

    return decode


def from_http(headers: Mapping[str, str], body: bytes) -> tuple[list[CloudEvent], str]:
    """Events of a CloudEvents HTTP request and its mode (binary, structured, batch)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type")
    kind = media_type(content_type)
    if kind == STRUCTURED:
        return [from_structured(body, mode="http-structured")], "structured"
    if kind == BATCH:
        items = _json(body, "a CloudEvents batch")
        if not isinstance(items, list):
            raise UndecodableEvent("a CloudEvents batch must be a JSON array")
        if len(items) > MAX_EVENTS_PER_BATCH:
            raise UndecodableEvent(f"a batch holds at most {MAX_EVENTS_PER_BATCH} events")
        events = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise UndecodableEvent(f"batch[{i}] is not a JSON object")
            try:
                events.append(from_attributes(item, mode="http-batch"))
            except UndecodableEvent as exc:
                raise UndecodableEvent(f"batch[{i}]: {exc}") from None
        return events, "batch"
    if "ce-specversion" in lowered:
        attrs: dict[str, Any] = {
            k[3:]: v for k, v in lowered.items() if k.startswith("ce-") and k != "ce-"
        }
        attrs["datacontenttype"] = content_type
        attrs["data"] = _data(body, content_type)
        return [from_attributes(attrs, mode="http-binary")], "binary"
    raise UnsupportedContent(
        "not a CloudEvent: send ce-* headers (binary mode), or a body of type "
        f"{STRUCTURED} or {BATCH}"
    )
