from __future__ import annotations

import dataclasses

import pytest
from cadenza_events import DecodeError, Envelope, Message, RunEvent, TaskResult, decode, encode
from cadenza_events.topics import Topic, TopicRegistry

pytestmark = pytest.mark.unit


def _message(env: Envelope[RunEvent], key: str | None = "p1") -> Message:
    raw_key, value, headers = encode(env, key)
    return Message("topic", 0, 0, raw_key, value, tuple(headers))


def test_binary_mode_headers_follow_cloudevents() -> None:
    env = Envelope(
        payload=RunEvent(run_id="p1", kind="run.started"),
        source="/gateway",
        tenant_id="acme",
        plan_id="p1",
        attempt=3,
    )
    msg = _message(env)
    headers = dict(msg.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"cadenza.run.event.v1"
    assert headers["ce_source"] == b"/gateway"
    assert headers["ce_tenantid"] == b"acme"
    assert headers["ce_planid"] == b"p1"
    assert headers["ce_attempt"] == b"3"
    assert headers["content-type"] == b"application/json"
    assert "ce_taskid" not in headers  # absent extensions are not sent empty
    assert "ce_sentbeforecommit" not in headers  # sent after its commit: the default
    assert msg.key == b"p1"
    assert decode(msg) == env
    early = dataclasses.replace(env, sent_before_commit=True)
    assert dict(_message(early).headers)["ce_sentbeforecommit"] == b"true"
    assert decode(_message(early)) == early
    assert early.with_trace("00-a-b-01", None).sent_before_commit is True


def test_new_optional_fields_keep_old_messages_decodable() -> None:
    # A v1 result written before `tries` existed still decodes, with the default.
    env = Envelope(
        payload=TaskResult(run_id="r", task_id="t", attempt=1, status="succeeded"),
        source="/w",
        plan_id="r",
    )
    raw_key, value, headers = encode(env, "r")
    old_value = value.replace(b',"tries":1', b"")
    assert b"tries" not in old_value
    decoded = decode(Message("t", 0, 0, raw_key, old_value, tuple(headers)))
    assert isinstance(decoded.payload, TaskResult)
    assert decoded.payload.tries == 1


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ((), b"{}", "not a CloudEvent"),
        (
            (
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"nope.v9"),
                ("ce_specversion", b"1.0"),
            ),
            b"{}",
            "unknown event type",
        ),
        (
            (
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"cadenza.run.event.v1"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ),
            b"[1, 2]",
            "not a JSON object",
        ),
        (
            (
                ("ce_id", b"1"),
                ("ce_source", b"/x"),
                ("ce_type", b"cadenza.run.event.v1"),
                ("ce_specversion", b"1.0"),
                ("ce_attempt", b"two"),
                ("content-type", b"application/json"),
            ),
            b'{"run_id": "r", "kind": "k"}',
            "attempt header",
        ),
    ],
)
def test_bad_messages_raise_decode_error_naming_the_problem(
    headers: tuple[tuple[str, bytes], ...], value: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError, match=reason) as info:
        decode(Message("t", 0, 0, None, value, headers))
    assert info.value.retryable is False


def test_key_rules() -> None:
    registry = TopicRegistry(prefix="x.")
    env = Envelope(payload=RunEvent(run_id="p", kind="k"), source="/s", plan_id="p", task_id="t")
    assert registry.key_for(Topic.TASK_READY, env) == "t"
    assert registry.key_for(Topic.TASK_RESULT, env) == "p"
    assert registry.name(Topic.TASK_READY) == "x.task.ready"
    assert registry.topic_of("x.task.ready") is Topic.TASK_READY
    # A run's few tasks made ready together share their run's key (one worker fetches them).
    grouped = Envelope(
        payload=RunEvent(run_id="p", kind="k"), source="/s", task_id="t", partition_key="p"
    )
    assert registry.key_for(Topic.TASK_READY, grouped) == "p"
    msg = _message(grouped, registry.key_for(Topic.TASK_READY, grouped))
    assert dict(msg.headers)["ce_partitionkey"] == b"p"
    assert decode(msg) == grouped
    with pytest.raises(ValueError, match="needs a key"):
        registry.key_for(
            Topic.TASK_READY, Envelope(payload=RunEvent(run_id="p", kind="k"), source="/s")
        )


def test_the_cloudevents_sdk_reads_what_we_write() -> None:
    """The codec writes headers directly; the reference SDK must still read it exactly."""
    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    env = Envelope(
        payload=TaskResult(run_id="r", task_id="t", attempt=2, status="succeeded", output=[1]),
        source="/cadenza/agent-worker",
        tenant_id="acme",
        plan_id="r",
        task_id="t",
        attempt=2,
        subject="node",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        partition_key="r",
        sent_before_commit=True,
    )
    raw_key, value, headers = encode(env, "r")
    event = ce_kafka.from_binary(
        ce_kafka.KafkaMessage(headers=dict(headers), key=raw_key, value=value),
        JSONFormat(),
        CloudEvent,
    )
    assert event.get_id() == env.id
    assert event.get_source() == env.source
    assert event.get_type() == "cadenza.task.result.v1"
    assert event.get_subject() == "node"
    assert event.get_time() == env.time
    for name, expected in [
        ("tenantid", "acme"),
        ("planid", "r"),
        ("taskid", "t"),
        ("attempt", "2"),
        ("traceparent", env.traceparent),
        ("partitionkey", "r"),  # CloudEvents' partitioning extension
        ("sentbeforecommit", "true"),
    ]:
        assert event.get_extension(name) == expected
    data = event.get_data()
    assert isinstance(data, dict)
    assert TaskResult.model_validate(data) == env.payload


def test_we_read_what_the_cloudevents_sdk_writes() -> None:
    from datetime import UTC, datetime

    from cloudevents.core.bindings import kafka as ce_kafka
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    event = CloudEvent(
        attributes={
            "id": "evt-1",
            "source": "/upstream",
            "type": "cadenza.run.event.v1",
            "specversion": "1.0",
            "time": datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC),
            "datacontenttype": "application/json",
            "tenantid": "acme",
            "planid": "p9",
            "attempt": "4",
            "sentbeforecommit": "true",
        },
        data=b'{"run_id": "p9", "kind": "run.started"}',
    )
    msg = ce_kafka.to_binary(event, JSONFormat(), key_mapper=lambda _e: "p9")
    key = msg.key.encode() if isinstance(msg.key, str) else msg.key
    env = decode(Message("t", 0, 0, key, msg.value, tuple(msg.headers.items())))
    assert isinstance(env.payload, RunEvent)
    assert (env.id, env.source, env.tenant_id, env.plan_id, env.attempt) == (
        "evt-1",
        "/upstream",
        "acme",
        "p9",
        4,
    )
    assert env.time == datetime(2026, 12, 4, 1, 2, 3, 456789, tzinfo=UTC)
    assert env.payload.kind == "run.started"
    assert env.sent_before_commit is True
