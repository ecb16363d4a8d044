"""The no-state ceiling of bench/dispatch.py: the engine's four Kafka hops with no state.

ready (orchestrator → Kafka) → worker consumes it → result (worker → Kafka) → orchestrator
consumes it. Each role is its own OS process, like the services, and uses the repo's own bus
(``cadenza_events.KafkaBus``: the CloudEvents codec, the consumer runner with its per-key
ordering and batched commits, the idempotent producer) with the engine's payloads and keys
(``task.ready`` keyed by task, ``task.result`` keyed by run). No database, no Redis, no
outbox, no run events.

    python bench/dispatch_ceiling.py worker --prefix P [--concurrency 64] [--impl bus|raw]
    python bench/dispatch_ceiling.py orchestrator --prefix P [--impl bus|raw]

Both roles run on the services' event loop (``cadenza_runtime.run_service``: uvloop).

``--impl raw`` does the same with bare aiokafka (same producer settings: acks=all,
idempotence, the bus's default linger; auto-commit every 200 ms) and a tiny JSON value instead of the
CloudEvents envelope: the limit of Kafka + the Python client on this machine.

The orchestrator reads commands on stdin and answers each with one JSON line on stdout:
``chain N`` (publish the next ready when the previous result arrives), ``fanout M`` (publish
M readies at once, wait for every result), ``combined N M`` (both at once, as the engine's
combined row), ``load RATE SECONDS BATCH`` (``--impl bus``: a
batch of BATCH readies every BATCH/RATE s for SECONDS, like the engine's offered load; the
answer has the p50 and p99 of each task's dispatch, publish → the worker's ``started_at``),
``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
import uuid
from typing import Any

from cadenza_events import (
    BusSettings,
    ConsumerOptions,
    Envelope,
    TaskReady,
    TaskResult,
    Topic,
)
from cadenza_events.kafka import KafkaBus
from cadenza_events.payloads import utcnow
from cadenza_runtime import run_service

TOOL = "noop"


def bus_settings(prefix: str, client_id: str) -> BusSettings:
    """The bus's defaults, which bench/dispatch.py's services run on too."""
    return BusSettings(
        backend="kafka", topic_prefix=prefix, session_timeout_ms=6000, client_id=client_id
    )


def ready_env(run_id: str, index: int) -> Envelope[TaskReady]:
    task_id = f"{run_id}.t.{index}"
    ready = TaskReady(run_id=run_id, task_id=task_id, node_id="t", attempt=1, name=TOOL)
    return Envelope(
        payload=ready,
        source="/bench/ceiling-orchestrator",
        plan_id=run_id,
        task_id=task_id,
        attempt=1,
        subject=task_id,
    )


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def worker(args: argparse.Namespace) -> None:
    worker_id = f"ceiling-{os.getpid()}"
    bus = KafkaBus(bus_settings(args.prefix, worker_id))
    await bus.start()
    publisher = bus.publisher

    async def handle(env: Envelope[Any]) -> None:
        ready = env.payload
        assert isinstance(ready, TaskReady)
        started = utcnow()
        result = TaskResult(
            run_id=ready.run_id,
            task_id=ready.task_id,
            attempt=ready.attempt,
            status="succeeded",
            worker_id=worker_id,
            started_at=started,
            finished_at=utcnow(),
        )
        await publisher.publish(
            Topic.TASK_RESULT,
            Envelope(
                payload=result,
                source="/bench/ceiling-worker",
                plan_id=ready.run_id,
                task_id=ready.task_id,
                attempt=ready.attempt,
                subject=ready.task_id,
            ),
        )

    consumer = bus.consumer(
        [Topic.TASK_READY],
        "ceiling-workers",
        handle,
        ConsumerOptions(concurrency=args.concurrency),
    )
    await consumer.start()
    try:
        await until_signalled()
    finally:
        await consumer.stop(grace_s=2)
        await bus.stop()


class CeilingOrchestrator:
    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.remaining: dict[str, int] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.workers: dict[str, set[str]] = {}
        self.published: dict[str, float] = {}
        """Offered-load tasks: when their ready was handed to the producer (epoch s)."""
        self.dispatched: list[float] = []
        self.load_done = asyncio.Event()
        self.load_expected = 0

    async def handle(self, env: Envelope[Any]) -> None:
        result = env.payload
        if not isinstance(result, TaskResult):
            return
        published = self.published.pop(result.task_id, None)
        if published is not None and result.started_at is not None:
            self.dispatched.append(result.started_at.timestamp() - published)
            if len(self.dispatched) >= self.load_expected:
                self.load_done.set()
        future = self.waiting.pop(result.task_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        if result.run_id in self.remaining:
            self.workers[result.run_id].add(result.worker_id or "")
            self.remaining[result.run_id] -= 1
            if self.remaining[result.run_id] == 0:
                self.done[result.run_id].set()

    async def chain(self, length: int) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for i in range(length):
            env = ready_env(run_id, i)
            future: asyncio.Future[None] = loop.create_future()
            self.waiting[env.payload.task_id] = future
            await self.bus.publisher.publish(Topic.TASK_READY, env)
            await future
        seconds = time.perf_counter() - started
        return {"kind": "chain", "tasks": length, "seconds": seconds}

    async def fanout(self, width: int) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        self.remaining[run_id] = width
        self.done[run_id] = asyncio.Event()
        self.workers[run_id] = set()
        started = time.perf_counter()
        await self.bus.publisher.publish_many(
            [(Topic.TASK_READY, ready_env(run_id, i)) for i in range(width)]
        )
        await self.done[run_id].wait()
        seconds = time.perf_counter() - started
        del self.remaining[run_id], self.done[run_id]
        workers = len(self.workers.pop(run_id))
        return {"kind": "fanout", "tasks": width, "seconds": seconds, "workers": workers}

    async def load(self, rate: float, duration_s: float, batch: int) -> dict[str, Any]:
        """Open-loop offered load: a run of ``batch`` readies every batch/rate s; each
        task's dispatch is its ready's publish → the worker's ``started_at`` (what the
        engine's ``dispatch`` measures from ``ready_at``, minus every piece of state)."""
        self.dispatched = []
        self.load_done.clear()
        self.load_expected = 1 << 62  # known once every batch is out
        interval = batch / rate
        started = time.monotonic()
        sends: list[asyncio.Task[None]] = []
        while time.monotonic() - started < duration_s:
            run_id = uuid.uuid4().hex
            envs = [ready_env(run_id, i) for i in range(batch)]
            now = time.time()
            for env in envs:
                self.published[env.payload.task_id] = now
            items = [(Topic.TASK_READY, env) for env in envs]
            sends.append(asyncio.create_task(self.bus.publisher.publish_many(items)))
            due = started + len(sends) * interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await asyncio.gather(*sends)
        self.load_expected = len(sends) * batch
        if len(self.dispatched) >= self.load_expected:
            self.load_done.set()
        async with asyncio.timeout(60):
            await self.load_done.wait()
        # Percentiles as bench/dispatch.py computes the engine's (a line per value would
        # outgrow the pipe's line limit).
        qs = statistics.quantiles(self.dispatched, n=100, method="inclusive")
        return {
            "kind": "load",
            "tasks": self.load_expected,
            "dispatch_p50_ms": round(qs[49] * 1000, 2),
            "dispatch_p99_ms": round(qs[98] * 1000, 2),
        }


async def together(
    state: CeilingOrchestrator | RawOrchestrator, length: int, width: int
) -> dict[str, Any]:
    """A chain of ``length`` and a fan-out of ``width`` at once, as the engine's combined
    row submits them: the span until both are done."""
    started = time.perf_counter()
    chain, fanout = await asyncio.gather(state.chain(length), state.fanout(width))
    seconds = time.perf_counter() - started
    parts = {"chain_seconds": chain["seconds"], "fanout_seconds": fanout["seconds"]}
    return {"kind": "combined", "tasks": length + width, "seconds": seconds, **parts}


async def serve_commands(state: CeilingOrchestrator | RawOrchestrator) -> None:
    """``chain N`` / ``fanout M`` / ``combined N M`` / ``quit`` on stdin; one JSON line per
    command."""
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            return
        command = line[0]
        if command == "load" and isinstance(state, CeilingOrchestrator):
            rate, seconds, batch = float(line[1]), float(line[2]), int(line[3])
            answer = await state.load(rate, seconds, batch)
        elif command == "chain":
            answer = await state.chain(int(line[1]))
        elif command == "combined":
            answer = await together(state, int(line[1]), int(line[2]))
        else:
            answer = await state.fanout(int(line[1]))
        print(json.dumps(answer), flush=True)


async def orchestrator(args: argparse.Namespace) -> None:
    bus = KafkaBus(bus_settings(args.prefix, "ceiling-orchestrator"))
    await bus.start()
    state = CeilingOrchestrator(bus)
    consumer = bus.consumer(
        [Topic.TASK_RESULT], "ceiling-orchestrator", state.handle, ConsumerOptions(concurrency=64)
    )
    await consumer.start()
    try:
        await serve_commands(state)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop(grace_s=2)
        await bus.stop()


# -- bare aiokafka --------------------------------------------------------------------------


def _raw_clients(prefix: str, topic: str, group: str) -> tuple[Any, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    servers = bus_settings(prefix, group).bootstrap_servers
    producer = AIOKafkaProducer(
        bootstrap_servers=servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=BusSettings().linger_ms,
    )
    consumer = AIOKafkaConsumer(
        prefix + topic,
        bootstrap_servers=servers,
        group_id=prefix + group,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=round(BusSettings().commit_interval_s * 1000),
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    return producer, consumer


async def raw_worker(args: argparse.Namespace) -> None:
    producer, consumer = _raw_clients(args.prefix, Topic.TASK_READY.value, "ceiling-workers")
    worker_id = f"ceiling-raw-{os.getpid()}"
    await producer.start()
    await consumer.start()
    result_topic = args.prefix + Topic.TASK_RESULT.value

    async def loop() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=args.concurrency)
            sends = []
            for records in batches.values():
                for r in records:
                    ready = json.loads(r.value)
                    result = {**ready, "status": "succeeded", "worker": worker_id}
                    value = json.dumps(result).encode()
                    key = ready["run"].encode()
                    sends.append(await producer.send(result_topic, value, key=key))
            if sends:
                await asyncio.gather(*sends)

    task = asyncio.create_task(loop())
    try:
        await until_signalled()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()


class RawOrchestrator:
    def __init__(self, prefix: str) -> None:
        self.producer, self.consumer = _raw_clients(
            prefix, Topic.TASK_RESULT.value, "ceiling-orchestrator"
        )
        self.ready_topic = prefix + Topic.TASK_READY.value
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.remaining: dict[str, int] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.workers: dict[str, set[str]] = {}

    async def listen(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    result = json.loads(r.value)
                    future = self.waiting.pop(result["task"], None)
                    if future is not None and not future.done():
                        future.set_result(None)
                    run = result["run"]
                    if run in self.remaining:
                        self.workers[run].add(result["worker"])
                        self.remaining[run] -= 1
                        if self.remaining[run] == 0:
                            self.done[run].set()

    def _ready(self, run_id: str, index: int) -> tuple[bytes, bytes, str]:
        task_id = f"{run_id}.t.{index}"
        value = json.dumps({"run": run_id, "task": task_id, "attempt": 1, "name": TOOL})
        return value.encode(), task_id.encode(), task_id

    async def chain(self, length: int) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        for i in range(length):
            value, key, task_id = self._ready(run_id, i)
            future: asyncio.Future[None] = loop.create_future()
            self.waiting[task_id] = future
            await self.producer.send_and_wait(self.ready_topic, value, key=key)
            await future
        return {"kind": "chain", "tasks": length, "seconds": time.perf_counter() - started}

    async def fanout(self, width: int) -> dict[str, Any]:
        run_id = uuid.uuid4().hex
        self.remaining[run_id] = width
        self.done[run_id] = asyncio.Event()
        self.workers[run_id] = set()
        started = time.perf_counter()
        sends = []
        for i in range(width):
            value, key, _ = self._ready(run_id, i)
            sends.append(await self.producer.send(self.ready_topic, value, key=key))
        await asyncio.gather(*sends)
        await self.done[run_id].wait()
        seconds = time.perf_counter() - started
        del self.remaining[run_id], self.done[run_id]
        workers = len(self.workers.pop(run_id))
        return {"kind": "fanout", "tasks": width, "seconds": seconds, "workers": workers}


async def raw_orchestrator(args: argparse.Namespace) -> None:
    state = RawOrchestrator(args.prefix)
    await state.producer.start()
    await state.consumer.start()
    listening = asyncio.create_task(state.listen())
    try:
        await serve_commands(state)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await state.consumer.stop()
        await state.producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("role", choices=["worker", "orchestrator"])
    parser.add_argument("--prefix", required=True, help="topic prefix (ends with '.')")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--impl", choices=["bus", "raw"], default="bus")
    args = parser.parse_args()
    roles = {
        ("bus", "worker"): worker,
        ("bus", "orchestrator"): orchestrator,
        ("raw", "worker"): raw_worker,
        ("raw", "orchestrator"): raw_orchestrator,
    }
    # The event loop the services run on (uvloop unless CADENZA_EVENT_LOOP says otherwise):
    # a ceiling on a slower loop than the engine's would flatter the engine's ratios.
    run_service(roles[args.impl, args.role](args))


if __name__ == "__main__":
    main()
