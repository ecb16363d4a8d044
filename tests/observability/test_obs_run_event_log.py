"""The run event log's append: one Redis round trip per batch of a run's events, numbered in
order, each CloudEvent id appended once — on fakeredis and on the real Redis (the Lua script
must behave the same on both)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import pytest
from cadenza_events import Envelope, MemoryBus, RunEvent, RunEventBatch, unbatch
from cadenza_runtime import RunEventLog, RunEventRecorder
from cadenza_state import HotState, StateSettings, create_redis
from prometheus_client import REGISTRY


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
async def hot(
    request: pytest.FixtureRequest, unique_id: str, require_services: Callable[..., None]
) -> AsyncIterator[HotState]:
    if request.param == "redis":
        require_services("redis")
    settings = StateSettings(redis_backend=request.param, redis_key_prefix=f"{unique_id}:")
    redis = create_redis(settings)
    yield HotState(redis, settings.redis_key_prefix)
    keys = [k async for k in redis.scan_iter(match=f"{unique_id}:*", count=10_000)]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


def batch(run_id: str, kinds: list[str]) -> Envelope[RunEventBatch]:
    events = [
        RunEvent(run_id=run_id, kind=k, status=None, data={"n": i}) for i, k in enumerate(kinds)
    ]
    return Envelope(RunEventBatch(run_id=run_id, events=events), source="/test")


def recorded(outcome: str) -> float:
    value = REGISTRY.get_sample_value("cadenza_run_events_recorded_total", {"outcome": outcome})
    return value or 0.0


async def test_a_batch_is_numbered_in_order_and_a_redelivery_appends_nothing(
    hot: HotState,
) -> None:
    log = RunEventLog(hot, ttl_s=600, ended_ttl_s=60)
    calls: list[Any] = []
    real = log._append

    async def counting(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    log._append = counting  # type: ignore[method-assign]
    first = unbatch(batch("r1", ["run.started", "task.ready", "task.ready"]))
    appended_before, duplicates_before = recorded("appended"), recorded("duplicate")

    assert await log.append_many(first) == [1, 2, 3]
    assert len(calls) == 1, "one round trip for the whole batch"
    # A redelivered batch (same ids) plus new events: only the new ones are appended.
    more = unbatch(batch("r1", ["task.succeeded", "run.succeeded"]))
    assert await log.append_many([*first, *more]) == [None, None, None, 4, 5]
    assert recorded("appended") == appended_before + 5
    assert recorded("duplicate") == duplicates_before + 3

    entries = await log.read("r1")
    assert [(e.seq, e.kind) for e in entries] == [
        (1, "run.started"),
        (2, "task.ready"),
        (3, "task.ready"),
        (4, "task.succeeded"),
        (5, "run.succeeded"),
    ]
    assert [e.data for e in entries] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 0}, {"n": 1}]
    assert entries[-1].terminal
    # The terminal event shortened the log's life to the ended TTL.
    assert 0 < await hot.redis.ttl(log.stream_key("r1")) <= 60


async def test_append_many_refuses_events_of_two_runs(hot: HotState) -> None:
    log = RunEventLog(hot)
    mixed = unbatch(batch("a", ["run.started"])) + unbatch(batch("b", ["run.started"]))
    with pytest.raises(ValueError, match="one run"):
        await log.append_many(mixed)
    assert await log.read("a") == []


async def test_a_fetch_of_several_runs_is_appended_in_one_pipelined_round_trip(
    hot: HotState,
) -> None:
    log = RunEventLog(hot, ttl_s=600, ended_ttl_s=60)
    pipelines = 0
    real_pipeline = hot.redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        return real_pipeline(*args, **kwargs)

    hot.redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    a = unbatch(batch("ra", ["run.started", "task.ready"]))
    b = unbatch(batch("rb", ["run.started"]))
    assert await log.append_runs([a, [], b]) == [[1, 2], [1]]
    assert pipelines == 1
    # Redelivered with one new event of "ra": the old ones are recognised, numbering goes on.
    again = unbatch(batch("ra", ["run.succeeded"]))
    assert await log.append_runs([[*a, *again], b]) == [[None, None, 3], [None]]
    assert [(e.seq, e.kind) for e in await log.read("ra")] == [
        (1, "run.started"),
        (2, "task.ready"),
        (3, "run.succeeded"),
    ]
    assert [e.kind for e in await log.read("rb")] == ["run.started"]
    assert 0 < await hot.redis.ttl(log.stream_key("ra")) <= 60  # "ra" ended


async def test_the_recorder_keeps_unbatch_s_ids_and_records_any_json_data(hot: HotState) -> None:
    """The recorder unpacks a batch without an envelope per event, under the ids
    ``unbatch`` gives, and appends a redelivered record once (its index keeps one field per
    record, not per event); data beyond the fast encoder (an integer over 64 bits, a value
    JSON has no type for) is recorded too."""
    log = RunEventLog(hot, ttl_s=600, ended_ttl_s=60)
    recorder = RunEventRecorder(MemoryBus(), log)
    records = batch("rr", ["run.started", "task.ready"])
    lone = Envelope(
        RunEvent(run_id="rr", kind="run.succeeded", data={"big": 2**70, "at": date(2026, 12, 4)}),
        source="/test/orchestrator",
    )
    await recorder.handle_batch([records, lone])
    entries = await log.read("rr")
    expected_ids = [e.id for e in unbatch(records)] + [lone.id]
    assert [(e.seq, e.kind, e.event_id) for e in entries] == list(
        zip([1, 2, 3], ["run.started", "task.ready", "run.succeeded"], expected_ids, strict=True)
    )
    assert [e.source for e in entries] == ["/test", "/test", "/test/orchestrator"]
    assert entries[-1].data == {"big": 2**70, "at": "2026-12-04"}
    index = await hot.redis.hgetall(log._index_key("rr"))
    assert sorted(k.decode() for k in index if k.startswith(b"id:")) == sorted(
        [f"id:{records.id}", f"id:{lone.id}"]
    )
    before = recorded("duplicate")
    await recorder.handle_batch([records])  # redelivered
    assert recorded("duplicate") == before + 2  # both of its events
    assert len(await log.read("rr")) == 3
