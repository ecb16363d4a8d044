"""PostgreSQL, Redis, Kafka and MinIO restarted mid-run (`cadenza infra down --only X`, a timed
outage, `up`): every run finishes, each effect once, and while the store is down the
gateway answers 503 with Retry-After — never 500.

Each drill runs on a PRIVATE instance of the restarted store (the others are the shared
ones): a fan-out of 200 no-op tasks and a chain of 20 (sleeps and journaled side effects)
are in flight when the store goes down; one more run is accepted just before the outage,
and the gateway is probed with a database-backed read (GET /v1/runs/{id}) and a write
(POST /v1/runs) throughout it, and with a finished run's event stream (GET
/v1/runs/{id}/events: the Redis event log).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cadenza_events import BusSettings, Envelope, RunStopped, Topic, Unavailable
from cadenza_events.kafka import KafkaBus
from sqlalchemy.ext.asyncio import AsyncEngine
from support import assert_eventually
from support.drills import (
    Probe,
    assert_exactly_once,
    deployment,
    effect_chain,
    effect_fan_out,
    fan_out,
    finished,
    outbox_left,
    probe_while_down,
    redispatches,
    start_run,
    succeeded_count,
    task_facts,
)
from support.infra import PrivateService

# Generous: on a loaded shared 2-core machine the services alone take seconds to start.
pytestmark = pytest.mark.timeout(240)

FAN_OUT = 200
CHAIN_PAIRS = 10  # 20 tasks: sleep, side effect, sleep, side effect, …
# Long enough that the chain is still going when the store goes down, on a fast engine too.
CHAIN_SLEEP_S = 1.0
PROBE_BODY = {"spec": effect_fan_out("probe", 5), "inputs": {}}
UNAVAILABLE = "urn:cadenza:problem:unavailable"
# The stores an `fx` call depends on: its journal (PostgreSQL), its effect (Redis).
EFFECT_STORES = ("postgres", "redis")


async def _drill(
    private: PrivateService,
    namespace: str,
    log_dir: Path,
    down_s: float,
    require_services: Callable[..., None],
    extra: dict[str, str] | None = None,
) -> tuple[list[Probe], list[str]]:
    """Run the workload through a restart of ``private``; returns the gateway's answers
    while it was down and the ids of every run that must have finished exactly once."""
    require_services(*({"kafka", "postgres", "redis", "minio"} - {private.name}))
    overrides = private.overrides() | (extra or {})
    async with deployment(namespace, log_dir, overrides, workers=2) as (_, api, db):
        # A finished run whose event stream (Redis log + PostgreSQL status) is probed too.
        done = await start_run(api, fan_out("done", 2))
        assert (await finished(api, done))["status"] == "succeeded"
        stopper = private.prepare_down()
        try:
            # The fan-out first (a fast engine may finish it within the stop: reported only),
            # then the chain, which is surely in mid-run when the store goes down.
            fan = await start_run(api, fan_out("fan", FAN_OUT))
            await assert_eventually(
                lambda: _at_least(db, fan, 20), timeout=60, interval=0.02, message="fan stuck"
            )
            chain = await start_run(api, effect_chain("chain", CHAIN_PAIRS, CHAIN_SLEEP_S))
            await assert_eventually(
                lambda: _at_least(db, chain, 2), timeout=60, interval=0.05, message="chain stuck"
            )
            before = await start_run(api, effect_fan_out("before", 10))  # not yet planned
            unfinished = dict.fromkeys((chain, fan), 0)
            for run_id in unfinished:
                unfinished[run_id] = _tasks(chain_or_fan=run_id == chain) - await succeeded_count(
                    db, run_id
                )
            took_down = await asyncio.to_thread(stopper.run)
        finally:
            stopper.cancel()
        outage_started = time.monotonic()
        probes = await probe_while_down(
            api,
            down_s,
            [
                ("GET", f"/v1/runs/{fan}", None),
                ("POST", "/v1/runs", PROBE_BODY),
                ("GET", f"/v1/runs/{done}/events", None),
            ],
        )
        took_up = await asyncio.to_thread(private.up)
        outage_s = time.monotonic() - outage_started
        print(
            f"{private.name} down in {took_down:.1f}s, outage {outage_s:.1f}s "
            f"(up took {took_up:.1f}s); {len(probes)} probes: "
            + ", ".join(sorted({str(p.status) for p in probes}))
        )
        accepted_while_down = [
            p.run_id for p in probes if p.method == "POST" and p.status == 201 and p.run_id
        ]

        async def submitted_after() -> str | None:
            resp = await api.post("/v1/runs", json=PROBE_BODY)
            assert resp.status_code in (201, 503), resp.text  # 503 only while it warms up
            return str(resp.json()["id"]) if resp.status_code == 201 else None

        after = await assert_eventually(submitted_after, timeout=30, interval=0.5)
        runs = [fan, chain, before, after, *accepted_while_down]
        # The outage hit the chain (sleeps make it last) in mid-run; the no-op fan-out is
        # reported only: a fast engine may finish it while `infra down` runs.
        print(f"unfinished when the stop of {private.name} began: {unfinished}")
        assert unfinished[chain] > 0, "the chain finished before the outage"
        # What the drill is for: every run finishes, each task's effect once.
        for run_id in runs:
            run = await finished(api, run_id, timeout=120)
            facts = await task_facts(db, run_id)
            assert_exactly_once(run, facts, effect_store_down=private.name in EFFECT_STORES)
        fan_run = await finished(api, fan)
        assert {t["status"] for t in fan_run["tasks"]} == {"succeeded"}, fan_run["tasks"]
        assert len(fan_run["tasks"]) == _tasks(chain_or_fan=False)
        chain_run = await finished(api, chain)
        assert chain_run["status"] == "succeeded", chain_run
        lost = await redispatches(db, runs)
        print(f"re-dispatched during the {private.name} drill: {len(lost)}", *lost, sep="\n  ")
        # Every event the engine committed was sent and its row deleted: a delete that
        # failed in the outage is retried, a send that failed went to the relay.
        await assert_eventually(
            lambda: _outbox_empty(db),
            timeout=60,
            interval=0.5,
            message="outbox rows were left unpublished or undeleted after the restart",
        )
        return probes, runs


def _tasks(chain_or_fan: bool) -> int:
    """Task rows of the chain, or of the fan-out (items, the group, its items, fan_in)."""
    return 2 * CHAIN_PAIRS if chain_or_fan else FAN_OUT + 3


async def _outbox_empty(db: AsyncEngine) -> bool:
    return await outbox_left(db) == 0


async def _at_least(db: AsyncEngine, run_id: str, count: int) -> bool:
    return await succeeded_count(db, run_id) >= count


def _assert_never_500(probes: list[Probe]) -> None:
    assert probes, "no request reached the gateway during the outage"
    bad = [str(p) for p in probes if p.status >= 500 and p.status != 503]
    assert not bad, f"the gateway failed instead of answering 503: {bad[:5]}"
    for p in probes:
        if p.status == 503:
            assert p.retry_after == "5", str(p)
            assert p.problem_type == UNAVAILABLE, str(p)


async def test_postgres_restart_mid_run(
    private_postgres: PrivateService,
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
) -> None:
    probes, _ = await _drill(private_postgres, unique_id, tmp_path, 7.0, require_services)
    _assert_never_500(probes)
    # Both the read and the write need PostgreSQL: nothing but 503 while it is away.
    assert {(p.method, p.status) for p in probes} == {("GET", 503), ("POST", 503)}, [
        str(p) for p in probes
    ]


async def test_redis_restart_mid_run(
    private_redis: PrivateService,
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
) -> None:
    # The `flaky` tool counts its calls in the platform's Redis: during the outage that call
    # pauses the attempt (StoreUnavailable) instead of spending the task's tries. A call
    # whose reply was lost after Redis applied it is made again (EFFECT_STORES).
    probes, _ = await _drill(private_redis, unique_id, tmp_path, 7.0, require_services)
    _assert_never_500(probes)
    assert {p.status for p in probes} <= {200, 201, 503}, [str(p) for p in probes]


async def test_kafka_restart_mid_run(
    private_kafka: PrivateService,
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
) -> None:
    probes, _ = await _drill(private_kafka, unique_id, tmp_path, 5.0, require_services)
    _assert_never_500(probes)
    assert {p.status for p in probes} <= {200, 201, 503}, [str(p) for p in probes]


async def test_minio_restart_mid_run(
    private_minio: PrivateService,
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
) -> None:
    """With a claim-check threshold of 16 bytes, every task's params and every output but
    the smallest travel through the object store: the outage hits the engine's path, not
    only documents. (An effect's own output, `{"calls":1}`, stays inline: the exactly-once
    check reads it from the run.)"""
    probes, _ = await _drill(
        private_minio,
        unique_id,
        tmp_path,
        7.0,
        require_services,
        {"CADENZA_CLAIM_CHECK_BYTES": "16"},
    )
    _assert_never_500(probes)
    assert {p.status for p in probes} <= {200, 201, 503}, [str(p) for p in probes]


async def test_a_run_stop_broadcast_is_heard_again_after_a_kafka_restart(
    private_kafka: PrivateService, unique_id: str
) -> None:
    """The workers' `run.control` listener (no group, no commits) rides out a broker
    restart: the client reconnects and a stop published after it is heard, once."""
    settings = BusSettings(
        bootstrap_servers=private_kafka.overrides()["CADENZA_BUS_BOOTSTRAP_SERVERS"],
        topic_prefix=f"{unique_id}.",
        partitions=3,
    )
    bus = KafkaBus(settings)
    await bus.start()
    heard: list[str] = []

    async def hear(env: Envelope[Any]) -> None:
        heard.append(env.payload.run_id)

    def stop(run_id: str) -> Envelope[RunStopped]:
        payload = RunStopped(run_id=run_id, status="cancelled")
        return Envelope(payload=payload, source="/tests", tenant_id="t", plan_id=run_id)

    listener = bus.listener([Topic.RUN_CONTROL], hear, "drill-control")
    await listener.start()
    try:
        await bus.publisher.publish(Topic.RUN_CONTROL, stop("before"))
        await assert_eventually(lambda: heard == ["before"], timeout=30)
        await asyncio.to_thread(private_kafka.down)
        await asyncio.to_thread(private_kafka.up)

        async def published() -> bool:  # the producer reconnects too; it may fail meanwhile
            try:
                await bus.publisher.publish(Topic.RUN_CONTROL, stop("after"))
            except Unavailable:
                return False
            return True

        await assert_eventually(published, timeout=60, interval=0.5)
        await assert_eventually(lambda: "after" in heard, timeout=60)
        assert heard == ["before", "after"]
    finally:
        await listener.stop()
        await bus.stop()
