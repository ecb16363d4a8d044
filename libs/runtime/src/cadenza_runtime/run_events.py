"""A run's event log: every `run.events` event of a run, numbered 1, 2, 3… in a Redis Stream.

Producers (gateway, orchestrator, worker) publish `run.events` on Kafka as before; the
`RunEventRecorder` (a consumer the gateway runs) appends each one to the run's stream. The
stream id ``0-<n>`` IS the sequence number, so a reader resumes exactly after the last event
it saw (SSE ``Last-Event-ID``): nothing is missed, nothing repeats. Redeliveries are
recognised by the CloudEvent id and appended once. A log lives ``ttl_s`` from its last
event, and only ``ended_ttl_s`` once the run's terminal event is in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import orjson
from cadenza_events import (
    Bus,
    Consumer,
    ConsumerOptions,
    Envelope,
    RunEvent,
    RunEventBatch,
    Topic,
    batched_event_id,
)
from cadenza_state import HotState
from opentelemetry import trace
from prometheus_client import Counter

from .outages import is_outage

log = logging.getLogger("cadenza.run_events")
tracer = trace.get_tracer("cadenza.run_events")

TERMINAL_KINDS = frozenset({"run.succeeded", "run.failed", "run.cancelled", "run.budget_exceeded"})
DEFAULT_TTL_S = 7 * 86_400
DEFAULT_ENDED_TTL_S = 86_400
RECORDER_FETCH_WAIT_MS = 100

RECORDED = Counter(
    "cadenza_run_events_recorded_total",
    "Run events appended to run event logs, by outcome (appended, duplicate).",
    ["outcome"],
)

# One round trip, atomic, for any number of one run's records (each a RunEvent or a
# RunEventBatch): for each, dedupe by its CloudEvent id, number its events, append them;
# then set the TTL once. Both keys share a hash tag ({run id}) so they live on one cluster
# slot. ARGV: ttl, ended ttl, then per record: its id, its event count n, 1 if it holds a
# terminal event, and its n events' bodies. Returns, per record, its first event's sequence
# number or 0 for a duplicate. One index field per record, not per event: a fan-out of
# 5,000 tasks records ~15,000 events in tens of records, and the index lives as long as the
# log (7 days); per event it also cost Redis ~3x the CPU (bench/run_event_log.py).
_APPEND = """
local firsts = {}
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if redis.call('hsetnx', KEYS[2], 'id:' .. ARGV[i], 1) == 0 then
    firsts[#firsts + 1] = 0
  else
    local last = redis.call('hincrby', KEYS[2], 'seq', n)
    for k = 1, n do
      redis.call('xadd', KEYS[1], '0-' .. (last - n + k), 'e', ARGV[i + 2 + k])
    end
    if ARGV[i + 2] == '1' then redis.call('hset', KEYS[2], 'ended', 1) end
    firsts[#firsts + 1] = last - n + 1
  end
  i = i + 3 + n
end
local ttl = ARGV[1]
if redis.call('hexists', KEYS[2], 'ended') == 1 then ttl = ARGV[2] end
redis.call('expire', KEYS[1], ttl)
redis.call('expire', KEYS[2], ttl)
return firsts
"""


@dataclass(frozen=True)
class RunEventEntry:
    """One recorded event, as the SSE/WebSocket endpoints and `cadenza runs watch` see it."""

    seq: int
    run_id: str
    kind: str
    at: str
    task_id: str | None = None
    node_id: str | None = None
    status: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    event_id: str = ""

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorded(NamedTuple):
    """One event as its log records it: the event and what of its envelope the log keeps
    (the recorder makes these straight from a ``RunEventBatch``, with no envelope per
    event), and the id of the Kafka record it came in: the log appends a record once."""

    event_id: str
    source: str
    event: RunEvent
    record_id: str


def _recorded(env: Envelope[RunEvent]) -> Recorded:
    return Recorded(env.id, env.source, env.payload, env.id)


def _events_of(env: Envelope[Any]) -> list[Recorded]:
    """What ``unbatch`` gives, without building an envelope per event."""
    payload = env.payload
    if isinstance(payload, RunEvent):
        return [Recorded(env.id, env.source, payload, env.id)]
    if isinstance(payload, RunEventBatch):
        return [
            Recorded(batched_event_id(env.id, n), env.source, event, env.id)
            for n, event in enumerate(payload.events)
        ]
    return []


def _body(item: Recorded) -> bytes:
    event = item.event
    body = {
        "run_id": event.run_id,
        "kind": event.kind,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "task_id": event.task_id,
        "node_id": event.node_id,
        "status": event.status,
        "data": event.data,
        "source": item.source,
        "event_id": item.event_id,
    }
    try:
        return orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # beyond orjson (integers over 64 bits): the standard library
        return json.dumps(body, default=str, separators=(",", ":")).encode()


def _entry(stream_id: Any, fields: dict[Any, Any]) -> RunEventEntry:
    sid = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
    raw = fields.get(b"e", fields.get("e", b"{}"))
    body = json.loads(raw)
    return RunEventEntry(seq=int(sid.split("-", 1)[1]), **body)


class RunEventLog:
    """Append and read per-run event streams on the hot state (Redis or fakeredis)."""

    def __init__(
        self,
        hot: HotState,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        ended_ttl_s: int = DEFAULT_ENDED_TTL_S,
    ) -> None:
        self._hot = hot
        self._ttl_s = ttl_s
        self._ended_ttl_s = ended_ttl_s
        self._append = hot.redis.register_script(_APPEND)

    def stream_key(self, run_id: str) -> str:
        return self._hot.key(f"run:{{{run_id}}}:events")

    def _index_key(self, run_id: str) -> str:
        return self._hot.key(f"run:{{{run_id}}}:events:index")

    async def append(self, env: Envelope[RunEvent]) -> int | None:
        """Append once per CloudEvent id; returns the sequence number, or None for a
        duplicate (a redelivery of an event already in the log)."""
        (seq,) = await self.append_many([env])
        return seq

    async def append_many(self, envs: Sequence[Envelope[RunEvent]]) -> list[int | None]:
        """Append one run's events in order, in ONE Redis round trip; per event its
        sequence number, or None for a duplicate."""
        if not envs:
            return []
        run_id = envs[0].payload.run_id
        if any(env.payload.run_id != run_id for env in envs):
            raise ValueError("append_many takes the events of one run")
        call, sizes = self._append_call([_recorded(env) for env in envs])
        return self._counted(await self._append(**call), sizes)

    async def append_runs(
        self, runs: Sequence[Sequence[Envelope[RunEvent]]]
    ) -> list[list[int | None]]:
        """``append_many`` for the events of several runs (one list per run), all in ONE
        pipelined round trip; per run, per event its sequence number or None."""
        return await self.append_recorded([[_recorded(env) for env in envs] for envs in runs])

    async def append_recorded(self, runs: Sequence[Sequence[Recorded]]) -> list[list[int | None]]:
        """``append_runs`` of events as the recorder unpacks them (``Recorded``)."""
        runs = [items for items in runs if items]
        if not runs:
            return []
        calls = [self._append_call(items) for items in runs]
        if len(calls) == 1:
            ((call, sizes),) = calls
            return [self._counted(await self._append(**call), sizes)]
        pipe = self._hot.redis.pipeline(transaction=False)
        for call, _sizes in calls:
            await self._append(**call, client=pipe)
        replies = await pipe.execute()
        return [
            self._counted(reply, sizes) for reply, (_, sizes) in zip(replies, calls, strict=True)
        ]

    def _append_call(self, items: Sequence[Recorded]) -> tuple[dict[str, Any], list[int]]:
        """The script's call for one run's events, grouped by the record they came in
        (consecutive: a record's events stay together), and each group's size."""
        run_id = items[0].event.run_id
        args: list[Any] = [self._ttl_s, self._ended_ttl_s]
        sizes: list[int] = []
        start = 0
        while start < len(items):
            record = items[start].record_id
            end = start + 1
            while end < len(items) and items[end].record_id == record:
                end += 1
            group = items[start:end]
            ended = any(item.event.kind in TERMINAL_KINDS for item in group)
            args += [record, len(group), "1" if ended else "0", *map(_body, group)]
            sizes.append(len(group))
            start = end
        keys = [self.stream_key(run_id), self._index_key(run_id)]
        return {"keys": keys, "args": args}, sizes

    @staticmethod
    def _counted(reply: Any, sizes: Sequence[int]) -> list[int | None]:
        """Per event, its sequence number (None: its record was a duplicate)."""
        seqs: list[int | None] = []
        for first, size in zip(reply, sizes, strict=True):
            seq = int(first)
            seqs += [seq + k for k in range(size)] if seq else [None] * size
        appended = sum(1 for n in seqs if n)
        RECORDED.labels("appended").inc(appended)
        RECORDED.labels("duplicate").inc(len(seqs) - appended)
        return seqs

    async def read(self, run_id: str, after: int = 0, count: int = 500) -> list[RunEventEntry]:
        """Events with a sequence number above ``after``, oldest first (at most ``count``)."""
        rows: Any = await self._hot.redis.xrange(
            self.stream_key(run_id), min=f"0-{after + 1}", max="+", count=count
        )
        return [_entry(sid, fields) for sid, fields in rows or []]

    async def wait(
        self, run_id: str, after: int, timeout_s: float, count: int = 500
    ) -> list[RunEventEntry]:
        """Like ``read`` but blocks up to ``timeout_s`` for the next event (XREAD BLOCK)."""
        key = self.stream_key(run_id)
        reply: Any = await self._hot.redis.xread(
            {key: f"0-{after}"}, block=max(1, int(timeout_s * 1000)), count=count
        )
        return [_entry(sid, fields) for _stream, rows in reply or [] for sid, fields in rows]

    async def follow(
        self,
        run_id: str,
        after: int = 0,
        *,
        block_s: float = 5.0,
        finished: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[RunEventEntry]:
        """Every event after ``after``, then live ones, until the run's terminal event.

        If the log falls silent and ``finished()`` says the run is over (its terminal event
        expired from the log, or never got recorded), the iteration ends after a second
        silent wait: a terminal event still on its way through Kafka gets that long."""
        cursor = after
        silent_and_finished = 0
        while True:
            entries = await self.read(run_id, cursor)
            if not entries:
                entries = await self.wait(run_id, cursor, block_s)
            for entry in entries:
                yield entry
                cursor = entry.seq
                if entry.terminal:
                    return
            if entries:
                silent_and_finished = 0
                continue
            if finished is not None and await finished():
                silent_and_finished += 1
                if silent_and_finished >= 2:
                    return


class RunEventRecorder:
    """Consumes `run.events` and appends each event to its run's log."""

    def __init__(
        self,
        bus: Bus,
        events: RunEventLog,
        *,
        group: str | None = None,
        options: ConsumerOptions | None = None,
    ) -> None:
        self._bus = bus
        self._events = events
        # Per deployment (topic prefix): two deployments on one cluster never share a group.
        self.group = group or f"{bus.registry.prefix}run-events-recorder"
        self._options = options or ConsumerOptions(
            concurrency=500,
            shutdown_grace_s=5.0,
            is_outage=is_outage,
            # A log's reader sees an event up to 100 ms later (a human watching a run does
            # not notice); under load the recorder makes one fetch per 16 KiB of events
            # instead of one per record, and idle five a second instead of fifty (20 ms
            # until the nineteenth session: bench/dispatch.py's CPU per task -4 %,
            # docs/benchmarks.md).
            fetch_wait_ms=RECORDER_FETCH_WAIT_MS,
        )
        self._consumer: Consumer | None = None

    async def handle(self, env: Envelope[Any]) -> None:
        """One record (tests, tools): a batch of one."""
        await self.handle_batch([env])

    async def handle_batch(self, envs: Sequence[Envelope[Any]]) -> None:
        """One partition's fetched records: their events grouped by run (in order: a run's
        records share a partition, and its stream's numbering follows them), appended in
        ONE pipelined round trip."""
        by_run: dict[str, list[Recorded]] = {}
        for env in envs:
            events = _events_of(env)
            if not events:
                log.warning("ignoring %s on %s", env.type, Topic.RUN_EVENTS.value)
                continue
            for item in events:
                by_run.setdefault(item.event.run_id, []).append(item)
        if not by_run:
            return
        first = next(iter(by_run.values()))[0].event
        with tracer.start_as_current_span(
            "run_events.append",
            attributes={
                "cadenza.run_id": first.run_id,
                "cadenza.event": first.kind,
                "cadenza.runs": len(by_run),
                "cadenza.run_events.count": sum(len(v) for v in by_run.values()),
            },
        ) as span:
            replies = await self._events.append_recorded(list(by_run.values()))
            seq = next((n for n in reversed(replies[-1]) if n), None) if replies else None
            span.set_attribute("cadenza.run_events.seq", seq or 0)

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = self._bus.batch_consumer(
            [Topic.RUN_EVENTS], self.group, self.handle_batch, self._options
        )
        await consumer.start()
        self._consumer = consumer
        log.info("recording run events (group %s)", self.group)

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
