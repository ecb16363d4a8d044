"""Upstream events and schedules start runs, exactly once, with the trigger service as its
own OS process on real Kafka and PostgreSQL (issue 12).

Runs are counted, not run: the tests start no orchestrator, so runs stay ``pending`` (their
``plan.requested`` is in the outbox and on Kafka; the engine's own suites cover the rest).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from cadenza_events import BusSettings, DeadLetter, Message, decode
from cadenza_events.kafka import KafkaBus
from cadenza_state import RunRecord, ScheduleFireRecord, StateSettings, create_engine
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from support import assert_eventually
from support.cleanup import drop_schema
from support.cluster import Cluster, free_port

BOOTSTRAP = BusSettings().bootstrap_servers
ECHO = {
    "name": "echo",
    "inputs": {"n": {"type": "integer"}, "account": {"type": "string", "default": "-"}},
    "tasks": [{"id": "t", "tool": "transform", "with": {"n": "${{ inputs.n }}"}}],
}


@pytest.fixture
async def deployment(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> AsyncIterator[Cluster]:
    """A gateway (it migrates the schema; the tests register through it) — the trigger
    processes are started by each test."""
    require_services("kafka", "postgres", "redis")
    cluster = Cluster(namespace=unique_id, log_dir=tmp_path)
    upstream = f"{unique_id}.upstream.payments"
    try:
        cluster.start_gateway()
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as api:
            resp = await api.post("/v1/workflows", json=ECHO)
            assert resp.status_code == 201, resp.text
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(upstream, 3, 1)])
        finally:
            await admin.close()
        yield cluster
    finally:
        cluster.stop()
        print(cluster.logs())
        await drop_schema(StateSettings(database_schema=unique_id))
        await KafkaBus(BusSettings(topic_prefix=f"{unique_id}.")).delete_topics()
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([upstream])
        except Exception as exc:  # clean-up is best effort
            print(f"upstream topic not deleted: {exc}")
        finally:
            await admin.close()


@pytest.fixture
async def db(deployment: Cluster) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(StateSettings(database_schema=deployment.namespace))
    yield engine
    await engine.dispose()


async def api_post(cluster: Cluster, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as api:
        resp = await api.post(path, json=body)
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


async def triggered_runs(db: AsyncEngine) -> list[dict[str, Any]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            select(RunRecord.inputs, RunRecord.started_by).where(RunRecord.started_by.is_not(None))
        )
        return [{"inputs": r.inputs, "started_by": r.started_by} for r in rows]


async def count_runs(db: AsyncEngine) -> int:
    async with db.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(RunRecord)) or 0)


def cloud_event(i: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Event ``i``: binary mode (even) or structured mode (odd), as any producer sends it."""
    data = {"n": i, "account": f"acct-{i % 7}"}
    if i % 2 == 0:
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", f"pay-{i}".encode()),
            ("ce_source", b"/payments"),
            ("ce_type", b"com.acme.payment.created"),
            ("content-type", b"application/json"),
        ]
        return json.dumps(data).encode(), headers
    body = {
        "specversion": "1.0",
        "id": f"pay-{i}",
        "source": "/payments",
        "type": "com.acme.payment.created",
        "data": data,
    }
    return json.dumps(body).encode(), [("content-type", b"application/cloudevents+json")]


async def produce(topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, value, key=f"k{i}".encode(), headers=headers)
            for i, (value, headers) in enumerate(records)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def scrape(port: int, outcome: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:  # the process is still starting
        return 0.0
    pattern = rf'^cadenza_trigger_events_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


TRIGGER = {
    "name": "payments",
    "filter": {"type": "com.acme.payment.created"},
    "workflow": "echo",
    "inputs": {"n": "${{ data.n }}", "account": "${{ data.account }}"},
}


@pytest.mark.timeout(300)  # three trigger processes start and 2,000 events are handled
async def test_a_thousand_events_start_a_thousand_runs_through_a_kill_and_a_replay(
    deployment: Cluster, db: AsyncEngine
) -> None:
    topic = f"{deployment.namespace}.upstream.payments"
    await api_post(deployment, "/v1/triggers", {**TRIGGER, "topics": [topic]})
    quiet = {"CADENZA_TRIGGER_SCHEDULER_ENABLED": "false"}
    first = deployment.start_trigger(quiet)
    await produce(topic, [cloud_event(i) for i in range(1000)])

    # kill -9 mid-way: runs committed, offsets maybe not — the restart redelivers those.
    at_kill = await assert_eventually(lambda: _at_least(db, 50), timeout=60, interval=0.05)
    first.kill()
    assert at_kill < 1000, "the consumer finished before the kill: nothing was proven"
    deployment.start_trigger(quiet)

    async def all_started() -> bool:
        return await count_runs(db) >= 1000

    await assert_eventually(all_started, timeout=90, interval=0.2, message="1,000 runs")
    runs = await triggered_runs(db)
    assert len(runs) == 1000
    assert sorted(r["inputs"]["n"] for r in runs) == list(range(1000))
    assert all(r["inputs"]["account"] == f"acct-{r['inputs']['n'] % 7}" for r in runs)
    origins = {(r["started_by"]["topic"], r["started_by"]["event_id"]) for r in runs}
    assert origins == {(topic, f"pay-{i}") for i in range(1000)}
    assert all(isinstance(r["started_by"]["offset"], int) for r in runs)

    # Replay the topic from the beginning (a new consumer group): every event is known.
    port = free_port()
    deployment.start_trigger(
        {**quiet, "CADENZA_TRIGGER_GROUP": "replay", "CADENZA_TRIGGER_METRICS_PORT": str(port)}
    )

    def replayed() -> bool:
        return scrape(port, "deduplicated") >= 1000

    await assert_eventually(replayed, timeout=90, interval=0.5, message="replay deduplicated")
    assert scrape(port, "started") == 0
    assert await count_runs(db) == 1000


async def _at_least(db: AsyncEngine, n: int) -> int | None:
    count = await count_runs(db)
    return count if count >= n else None


async def dead_letters(cluster: Cluster, want: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        f"{cluster.namespace}.dlq",
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(60):
            while len(letters) < want:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        msg = Message(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key,
                            r.value or b"",
                            tuple(r.headers or ()),
                        )
                        letters.append(decode(msg).payload)  # type: ignore[arg-type]
    finally:
        await consumer.stop()
    return letters


async def test_poison_events_are_dead_lettered_with_the_reason_and_consumption_goes_on(
    deployment: Cluster, db: AsyncEngine
) -> None:
    topic = f"{deployment.namespace}.upstream.payments"
    await api_post(
        deployment,
        "/v1/triggers",
        {**TRIGGER, "topics": [topic], "filter": {"expression": "'n' in data"}},
    )
    deployment.start_trigger({"CADENZA_TRIGGER_SCHEDULER_ENABLED": "false"})
    good_value, good_headers = cloud_event(1)
    bad_mapping, bad_headers = cloud_event(3)
    bad_mapping = bad_mapping.replace(b'"n": 3', b'"n": "three"')
    no_n = json.dumps(
        {"specversion": "1.0", "id": "x", "source": "/p", "type": "t", "data": 5}
    ).encode()
    structured = [("content-type", b"application/cloudevents+json")]
    await produce(
        topic,
        [
            (b"\xff\x00 garbage", structured),
            (b"\x00\x01", [("content-type", b"application/octet-stream")]),
            (bad_mapping, bad_headers),
            (no_n, structured),  # the filter expression fails ('n' in 5)
            (good_value, good_headers),
        ],
    )
    letters = await dead_letters(deployment, 4)
    reasons = sorted(letter.error_code for letter in letters)
    assert reasons == [
        "filter_failed",
        "invalid_inputs",
        "undecodable_event",
        "unsupported_content_type",
    ]
    assert all(letter.original_topic == topic for letter in letters)
    assert any("application/octet-stream" in letter.reason for letter in letters)

    async def good_started() -> bool:
        return [r["inputs"]["n"] for r in await triggered_runs(db)] == [1]

    await assert_eventually(good_started, timeout=30, message="the good event's run")


@pytest.mark.timeout(240)  # ~20 s of ticks, three scheduler processes start
async def test_a_schedule_fires_once_per_tick_with_two_schedulers_pauses_and_catches_up(
    deployment: Cluster, db: AsyncEngine
) -> None:
    quiet = {"CADENZA_TRIGGER_CONSUMER_ENABLED": "false", "CADENZA_TRIGGER_SCHEDULE_GRACE_S": "1"}
    schedule = await api_post(
        deployment,
        "/v1/schedules",
        {
            "name": "every-second",
            "cron": "* * * * * *",
            "workflow": "echo",
            "inputs": {"n": 7},
            "overlap": "allow",
            "catch_up": "all",
            "catch_up_max": 3,
        },
    )
    assert len(schedule["next_fires"]) == 5
    schedulers = [deployment.start_trigger(quiet), deployment.start_trigger(quiet)]
    began = datetime.now(UTC)

    async def fires() -> list[tuple[datetime, str]]:
        """(tick, outcome) of every fired tick."""
        async with db.connect() as conn:
            rows = await conn.execute(
                select(ScheduleFireRecord.fire_time, ScheduleFireRecord.outcome).order_by(
                    ScheduleFireRecord.fire_time
                )
            )
            return [(r.fire_time, r.outcome) for r in rows]

    async def fifteen() -> bool:
        return len(await fires()) >= 15

    await assert_eventually(fifteen, timeout=60, interval=0.5, message="15 ticks")
    await api_post(deployment, "/v1/schedules/every-second/pause", {})
    paused_at = datetime.now(UTC)
    ticks = await fires()
    runs = await triggered_runs(db)
    # One run per tick: as many runs as ticks, each tick's fire_time once.
    fire_times = [r["started_by"]["fire_time"] for r in runs]
    assert len(runs) == len(ticks) == len(set(fire_times))
    assert all(r["inputs"] == {"n": 7, "account": "-"} for r in runs)  # defaults applied
    assert ticks[0][0] >= began - timedelta(seconds=2)

    # Paused: nothing fires (two scheduler polls and a tick later).
    await asyncio.sleep(2.5)  # the absence of ticks can only be observed over time
    assert len(await fires()) == len(ticks)

    # Both schedulers down, the schedule resumed: the ticks missed meanwhile are caught up
    # by the policy (the 3 most recent) when a scheduler is back.
    for process in schedulers:
        process.kill()
    await api_post(deployment, "/v1/schedules/every-second/resume", {})
    await asyncio.sleep(3)
    deployment.start_trigger(quiet)

    async def after_pause() -> list[tuple[datetime, str]]:
        return [f for f in await fires() if f[0] > paused_at]

    await assert_eventually(after_pause, timeout=60, interval=0.5, message="ticks after restart")
    later = await after_pause()
    # The missed ticks fired by the catch-up policy: exactly catch_up_max, the most recent
    # ones (the older missed ticks were skipped, not fired).
    caught_up = [t for t, outcome in later if outcome == "caught_up"]
    assert len(caught_up) == 3, later
    assert min(caught_up) > paused_at + timedelta(seconds=2)
    assert all(outcome in ("started", "caught_up") for _, outcome in later)
    assert len(await triggered_runs(db)) == len(await fires())
