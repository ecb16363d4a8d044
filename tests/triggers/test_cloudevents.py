"""Reading upstream events: Kafka records (binary, structured, plain JSON) and HTTP."""

from __future__ import annotations

import json

import pytest
from cadenza_events import Message
from cadenza_triggers import (
    UndecodableEvent,
    UnsupportedContent,
    from_http,
    from_kafka,
    kafka_decoder,
)

pytestmark = pytest.mark.unit
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def record(value: bytes, headers: list[tuple[str, bytes]], offset: int = 7) -> Message:
    return Message("upstream.payments", 2, offset, b"k", value, tuple(headers))


def no_plain(_topic: str) -> str | None:
    return None


def test_binary_mode_reads_headers_and_json_data() -> None:
    msg = record(
        b'{"amount": 12}',
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e1"),
            ("ce_source", b"/pay"),
            ("ce_type", b"payment.created"),
            ("ce_subject", b"acct-1"),
            ("ce_traceparent", TRACEPARENT.encode()),
            ("content-type", b"application/json"),
        ],
    )
    event = from_kafka(msg, no_plain)
    assert (event.id, event.source, event.type, event.subject) == (
        "e1",
        "/pay",
        "payment.created",
        "acct-1",
    )
    assert event.data == {"amount": 12}
    assert event.kafka == {"topic": "upstream.payments", "partition": 2, "offset": 7, "key": "k"}
    env = kafka_decoder(no_plain)(msg)
    assert env.traceparent == TRACEPARENT  # the consumer span continues the upstream trace
    assert env.payload == event


def test_structured_mode_and_base64_data() -> None:
    body = {
        "specversion": "1.0",
        "id": "e2",
        "source": "/pay",
        "type": "t",
        "data_base64": "eyJhIjogMX0=",
        "datacontenttype": "application/json",
        "region": "eu",
    }
    msg = record(json.dumps(body).encode(), [("content-type", b"application/cloudevents+json")])
    event = from_kafka(msg, no_plain)
    assert (event.mode, event.data, event.extensions) == ("structured", {"a": 1}, {"region": "eu"})


def test_plain_json_records_need_a_configured_type() -> None:
    msg = record(b'{"amount": 3}', [])
    with pytest.raises(UndecodableEvent, match="plain_type"):
        from_kafka(msg, no_plain)
    event = from_kafka(msg, lambda topic: "payment.plain")
    # A plain record's identity is its place in the log, so a replay dedupes.
    assert (event.type, event.source, event.id) == (
        "payment.plain",
        "kafka://upstream.payments",
        "2:7",
    )


@pytest.mark.parametrize(
    ("value", "headers", "error"),
    [
        (b"\x00\xffgarbage", [("content-type", b"application/cloudevents+json")], UndecodableEvent),
        (b"\x00\xff", [("content-type", b"application/octet-stream")], UnsupportedContent),
        (b"not json", [], UndecodableEvent),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_id", b"x")], UndecodableEvent),
        (
            b"\x00",
            [
                ("ce_specversion", b"1.0"),
                ("ce_id", b"x"),
                ("ce_source", b"s"),
                ("ce_type", b"t"),
                ("content-type", b"image/png"),
            ],
            UnsupportedContent,
        ),
        (b"[]", [("content-type", b"application/cloudevents-batch+json")], UndecodableEvent),
    ],
)
def test_unreadable_records_raise_a_decode_error_with_the_reason(
    value: bytes, headers: list[tuple[str, bytes]], error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        from_kafka(record(value, headers), lambda topic: "plain")
    assert str(caught.value)


def test_http_binding_binary_structured_batch() -> None:
    events, mode = from_http(
        {
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-source": "s",
            "ce-type": "t",
            "content-type": "text/plain",
        },
        b"hello",
    )
    assert (mode, events[0].data, events[0].kafka) == ("binary", "hello", None)
    body = [{"specversion": "1.0", "id": str(i), "source": "s", "type": "t"} for i in range(3)]
    events, mode = from_http(
        {"Content-Type": "application/cloudevents-batch+json"}, json.dumps(body).encode()
    )
    assert (mode, [e.id for e in events]) == ("batch", ["0", "1", "2"])
    with pytest.raises(UndecodableEvent, match=r"batch\[1\]"):
        from_http(
            {"content-type": "application/cloudevents-batch+json"},
            json.dumps([body[0], {"id": "x"}]).encode(),
        )
    with pytest.raises(UnsupportedContent):
        from_http({"content-type": "application/json"}, b"{}")
