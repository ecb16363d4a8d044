"""What this machine charges for one Kafka round trip and for waking another process: the
floor under the engine's CPU per task (docs/benchmarks.md, "twenty-third session").

    uv run cadenza infra up
    uv run python bench/broker_cost.py              # about a minute

Rows, one after the other:
- idle: the broker's CPU (utime+stime from /proc, found by its listening port) over
  ``--idle`` s with this script's producer and consumer connected and nothing sent.
- single, at each of ``--rates`` (records/s): one 800-byte record per produce request,
  each awaited, on the bus's producer settings (acks=all, idempotence, linger 0), read by a
  consumer fetching with the bus's fetch wait (50 ms). ``broker_ms_per_request``: the
  broker's CPU above idle per record (one produce and, mostly, one fetch each);
  ``client_ms_per_request``: this process's; ``roundtrip_p50_ms``: send → consumed.
- batched (the baseline): ``--batched-rate`` records/s sent ``--batch`` to a produce
  request (a rate at which the broker's idle share is small). ``broker_ms_per_record``;
  ``ratio_request_vs_record``: how many times a record costs the broker more when it
  travels alone at the first of ``--rates``, i.e. how much of a small request is the
  request.
- wakeup: ``--pings`` round trips of one byte between two processes over pipes (each end
  blocks until the other writes): ``wakeup_us`` per round trip (two wakeups), its CPU in
  both processes; the baseline ``syscall_us`` is the same write and read in one process,
  which never blocks. ``ratio_wakeup_vs_syscall``: what sleeping and being woken adds.

On a nested or paravirtualised VM a wakeup can cost far more than the work it carries;
the broker's network and request threads hand every request to each other, so its cost
per request follows. The LAST line printed is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import SERVER_PORTS, CpuMeter, broker_uptime, server_roots

BOOTSTRAP = f"127.0.0.1:{SERVER_PORTS['kafka']}"
VALUE = b"x" * 800  # about a task.ready's value and headers
FETCH_WAIT_MS = 50  # BusSettings.fetch_max_wait_ms' default


class Pair:
    """A producer and a consumer of one fresh topic; ``consumed`` maps a key to when it
    was read."""

    def __init__(self) -> None:
        self.topic = f"broker-cost-{uuid.uuid4().hex[:8]}"
        self.producer = AIOKafkaProducer(
            bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True, linger_ms=0
        )
        self.consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=BOOTSTRAP,
            group_id=f"{self.topic}-group",
            fetch_max_wait_ms=FETCH_WAIT_MS,
            auto_offset_reset="earliest",
        )
        self.consumed: dict[bytes, float] = {}
        self._awaited: tuple[bytes, asyncio.Event] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, 1, 1)])
        finally:
            await admin.close()
        await self.producer.start()
        await self.consumer.start()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=1000)).values():
                now = time.perf_counter()
                for record in records:
                    if record.key is not None:
                        self.consumed[record.key] = now
                if self._awaited is not None and self._awaited[0] in self.consumed:
                    self._awaited[1].set()

    async def consumed_up_to(self, key: bytes, timeout_s: float = 10.0) -> None:
        """Wait until ``key`` was read (one partition: everything sent before it was)."""
        if key in self.consumed:
            return
        arrived = asyncio.Event()
        self._awaited = (key, arrived)
        try:
            await asyncio.wait_for(arrived.wait(), timeout_s)
        finally:
            self._awaited = None

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.consumer.stop()
        await self.producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            await admin.delete_topics([self.topic])
        finally:
            await admin.close()


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measured(meter: CpuMeter, body: Any) -> tuple[float, float, float]:
    """Run ``body()``; wall seconds, the broker's CPU seconds, this process's."""
    before, client, started = meter.sample(), client_cpu_s(), time.perf_counter()
    await body()
    wall = time.perf_counter() - started
    return wall, meter.delta(before, meter.sample())["kafka"], client_cpu_s() - client


async def single(pair: Pair, rate: float, seconds: float) -> list[float]:
    """One record per produce request at ``rate``/s; each one's send → consumed time."""
    sent: dict[bytes, float] = {}
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        key = f"s{rate}-{n}".encode()
        sent[key] = time.perf_counter()
        await pair.producer.send_and_wait(pair.topic, VALUE, key=key)
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
    await pair.consumed_up_to(key)
    return [pair.consumed[k] - t for k, t in sent.items() if k in pair.consumed]


async def batched(pair: Pair, rate: float, seconds: float, batch: int) -> int:
    """The same records/s, ``batch`` of them to a produce request; how many were sent."""
    started = time.perf_counter()
    n = 0
    while time.perf_counter() - started < seconds:
        futures = [
            await pair.producer.send(pair.topic, VALUE, key=f"b{n + i}".encode())
            for i in range(batch)
        ]
        await asyncio.gather(*futures)
        n += batch
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
    return n


def ping_pong(pings: int) -> dict[str, float]:
    """Round trips of one byte between two processes, against the same syscalls in one."""
    there_r, there_w = os.pipe()
    back_r, back_w = os.pipe()
    child = os.fork()
    if child == 0:  # the other end: echo until the pipe closes
        os.close(there_w)
        os.close(back_r)
        while os.read(there_r, 1):
            os.write(back_w, b".")
        os._exit(0)
    os.close(there_r)
    os.close(back_w)
    own = client_cpu_s()
    started = time.perf_counter()
    for _ in range(pings):
        os.write(there_w, b".")
        os.read(back_r, 1)
    wall = time.perf_counter() - started
    own = client_cpu_s() - own
    os.close(there_w)
    os.waitpid(child, 0)
    child_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = child_usage.ru_utime + child_usage.ru_stime
    os.close(back_r)

    loop_r, loop_w = os.pipe()  # the baseline: the same write and read, never blocking
    started = time.perf_counter()
    for _ in range(pings):
        os.write(loop_w, b".")
        os.read(loop_r, 1)
    syscalls = time.perf_counter() - started
    os.close(loop_r)
    os.close(loop_w)
    return {
        "wakeup_us": round(wall / pings * 1e6, 1),
        "wakeup_cpu_us": round((own + child_cpu) / pings * 1e6, 1),
        "syscall_us": round(syscalls / pings * 1e6, 2),
        "ratio_wakeup_vs_syscall": round(wall / syscalls, 1),
    }


async def kafka_rows(args: argparse.Namespace) -> dict[str, Any]:
    meter = CpuMeter(roots={"kafka": server_roots()["kafka"]})
    out: dict[str, Any] = {"broker_uptime_s": broker_uptime()}
    pair = Pair()
    await pair.start()
    try:
        await single(pair, args.rates[0], args.warmup)  # connections, fetch session, JIT
        idle_shares = []  # the median of three windows: one may catch other work
        for _ in range(3):
            wall, broker, _ = await measured(meter, lambda: asyncio.sleep(args.idle / 3))
            idle_shares.append(broker / wall)
        idle_share = statistics.median(idle_shares)
        out["broker_idle_pct"] = round(idle_share * 100, 1)
        for rate in args.rates:
            times: list[float] = []

            async def row(rate: float = rate, times: list[float] = times) -> None:
                times.extend(await single(pair, rate, args.seconds))

            wall, broker, client = await measured(meter, row)
            n = len(times)
            tag = f"single_{rate:g}"
            out[f"{tag}_requests_per_s"] = round(n / wall, 1)
            out[f"{tag}_broker_ms_per_request"] = round((broker - idle_share * wall) / n * 1e3, 3)
            out[f"{tag}_client_ms_per_request"] = round(client / n * 1e3, 3)
            out[f"{tag}_roundtrip_p50_ms"] = round(statistics.median(times) * 1e3, 2)
        sent = 0

        async def batch_row() -> None:
            nonlocal sent
            sent = await batched(pair, args.batched_rate, args.seconds, args.batch)

        wall, broker, client = await measured(meter, batch_row)
        out["batched_records_per_s"] = round(sent / wall, 1)
        out["batched_broker_ms_per_record"] = round((broker - idle_share * wall) / sent * 1e3, 4)
        out["batched_client_ms_per_record"] = round(client / sent * 1e3, 4)
        first = f"single_{args.rates[0]:g}_broker_ms_per_request"
        out["ratio_request_vs_record"] = round(
            out[first] / max(out["batched_broker_ms_per_record"], 1e-6), 1
        )
    finally:
        await pair.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="500,100", help="records/s of the single rows")
    parser.add_argument("--seconds", type=float, default=10.0, help="per row")
    parser.add_argument("--idle", type=float, default=9.0, help="s, in three windows")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=100, help="records per batched request")
    parser.add_argument("--batched-rate", type=float, default=20_000.0, help="records/s")
    parser.add_argument("--pings", type=int, default=20_000)
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not args.rates:
        parser.error("--rates needs at least one rate")
    result = asyncio.run(kafka_rows(args))
    result.update(ping_pong(args.pings))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
