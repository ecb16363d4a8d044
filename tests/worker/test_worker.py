"""The worker end to end on the bus, without an orchestrator (see conftest.Stack)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from cadenza_events import Envelope, RunEvent, RunStopped, TaskReady, Topic
from cadenza_runtime import keys
from cadenza_state import ToolEffectRecord
from cadenza_worker import (
    EffectJournal,
    ExecutorRegistry,
    TaskCall,
    ToolContext,
    ToolExecutor,
    ToolRegistry,
    builtin_tools,
    output_key,
)
from prometheus_client import REGISTRY
from support import assert_eventually
from support.tracing import capture_spans
from worker_support import BOTH_STACKS, HttpServer, Stack, metric

# Every test runs on the in-process stack (unit) and on real Kafka/PostgreSQL/Redis/MinIO
# (integration).
pytestmark = BOTH_STACKS


def key() -> str:
    return uuid.uuid4().hex


def dispatches(tool: str) -> float:
    labels = {"kind": "tool", "name": tool}
    return REGISTRY.get_sample_value("cadenza_worker_dispatch_latency_seconds_count", labels) or 0.0


async def test_happy_path(stack: Stack) -> None:
    dispatched = dispatches("transform")
    await stack.start_worker()
    params = {"greeting": "hello, ada", "items": [1, 2, 3]}
    task = await stack.add_task("transform", params)
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert result.output == params
    assert result.output_ref is None
    assert result.error is None
    assert result.tries == 1
    assert result.worker_id == stack.workers[0].settings.worker_id
    assert result.started_at is not None
    assert result.started_at >= task.ready_at

    row = await stack.row(task.task_id)
    # The worker writes no task row: the orchestrator alone records start and outcome.
    assert (row.status, row.worker_id, row.started_at) == ("ready", None, None)
    assert dispatches("transform") == dispatched + 1

    hot = stack.resources.hot

    async def done_and_released() -> bool:
        done = await hot.redis.get(hot.key(keys.task_done(task.task_id, 1)))
        return (
            done is not None
            and done.startswith(b"succeeded:")
            and await stack.lease_owner(task.task_id) is None
        )

    await assert_eventually(done_and_released)  # marked done, then the lease released
    # The done marker stands alone: the started marker went with the lease.
    assert not await hot.redis.exists(hot.key(keys.task_started(task.task_id, 1)))
    await assert_eventually(
        lambda: stack.event_kinds(task.task_id) == ["task.started", "task.finished"],
        message=f"events {stack.event_kinds(task.task_id)}",
    )
    finished = next(e for e in stack.events if e.payload.kind == "task.finished")
    assert finished.tenant_id == "acme"
    assert finished.plan_id == task.run_id
    assert finished.payload.status == "succeeded"
    envelope = next(e for e in stack.results if e.payload.task_id == task.task_id)
    assert (envelope.tenant_id, envelope.plan_id, envelope.attempt) == ("acme", task.run_id, 1)


async def test_noop_and_sleep(stack: Stack) -> None:
    await stack.start_worker()
    noop = await stack.add_task("noop")
    nap = await stack.add_task("sleep", {"seconds": 0.05})
    await stack.dispatch(noop)
    await stack.dispatch(nap)
    assert (await stack.result(noop)).output == {}
    assert (await stack.result(nap)).output == {"slept_s": 0.05}


async def test_flaky_retries_then_succeeds(stack: Stack) -> None:
    retries = metric("cadenza_worker_task_retries_total", tool="flaky", code="flaky_failure")
    await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 2, "key": k}, max_attempts=3)
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.tries, result.output) == ("succeeded", 3, {"calls": 3})
    assert await stack.flaky_calls(k) == 3
    assert metric("cadenza_worker_task_retries_total", tool="flaky", code="flaky_failure") == (
        retries + 2
    )
    await assert_eventually(
        lambda: (
            stack.event_kinds(task.task_id)
            == ["task.started", "task.retrying", "task.retrying", "task.finished"]
        )
    )
    retrying = [e.payload for e in stack.events if e.payload.kind == "task.retrying"]
    assert [r.data["try"] for r in retrying] == [1, 2]
    assert retrying[0].data["error"]["code"] == "flaky_failure"


async def test_retries_run_out(stack: Stack) -> None:
    await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 5, "key": k}, max_attempts=3)
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.tries) == ("failed", 3)
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("flaky_failure", True)
    assert await stack.flaky_calls(k) == 3


async def test_non_retryable_failure_fails_at_once(stack: Stack, http_server: HttpServer) -> None:
    await stack.start_worker()  # default: private addresses refused
    task = await stack.add_task("http_request", {"url": http_server.url("/echo")}, max_attempts=5)
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.tries) == ("failed", 1)
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("blocked_address", False)
    assert http_server.hits == {}


async def test_unknown_tool_and_kind_are_task_failures(stack: Stack) -> None:
    await stack.start_worker()
    tool = await stack.add_task("no_such_tool", max_attempts=3)
    other = await stack.add_task("helper", kind="workflow", max_attempts=3)
    await stack.dispatch(tool)
    await stack.dispatch(other)
    result = await stack.result(tool)
    assert (result.status, result.tries) == ("failed", 1)
    assert result.error is not None
    assert result.error.code == "unknown_tool"
    result = await stack.result(other)
    assert result.error is not None
    assert (result.status, result.error.code) == ("failed", "unknown_kind")
    assert "'agent'" in result.error.message  # names the kinds this worker knows


async def test_each_try_times_out(stack: Stack) -> None:
    await stack.start_worker()
    task = await stack.add_task("sleep", {"seconds": 30}, timeout_s=0.1, max_attempts=2)
    started = time.monotonic()
    await stack.dispatch(task)
    result = await stack.result(task)
    assert time.monotonic() - started < 5
    assert (result.status, result.tries) == ("failed", 2)
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("timeout", True)


async def test_cancellation_stops_a_running_tool(stack: Stack) -> None:
    await stack.start_worker()
    task = await stack.add_task("sleep", {"seconds": 60}, timeout_s=120)
    started = time.monotonic()
    await stack.dispatch(task)

    async def running() -> bool:
        return await stack.lease_owner(task.task_id) is not None

    await assert_eventually(running)
    await assert_eventually(lambda: metric("cadenza_worker_tasks_in_flight") >= 1)
    await stack.cancel_run(task.run_id)
    result = await stack.result(task)
    assert time.monotonic() - started < 10  # well before the 60 s sleep
    assert result.status == "cancelled"
    assert result.tries == 1
    assert result.error is not None
    assert result.error.code == "cancelled"
    assert metric("cadenza_worker_tasks_in_flight") == 0  # the sleep really stopped

    async def released() -> bool:
        return await stack.lease_owner(task.task_id) is None

    await assert_eventually(released)
    await assert_eventually(lambda: "task.finished" in stack.event_kinds(task.task_id))


async def stop_broadcast(stack: Stack, run_id: str) -> None:
    """What the orchestrator publishes when a run stops (no Redis marker: only the
    broadcast can tell the worker)."""
    await stack.resources.bus.publisher.publish(
        Topic.RUN_CONTROL,
        Envelope(
            payload=RunStopped(run_id=run_id, status="cancelled"),
            source="/tests",
            tenant_id="default",
            plan_id=run_id,
        ),
    )


async def test_a_stop_broadcast_stops_a_running_tool_at_once(stack: Stack) -> None:
    """The heartbeat (which would read the Redis marker) beats every 20 s here, and no
    marker is set: only the run.control broadcast can stop the sleep this fast."""
    await stack.start_worker(lease_ttl_s=60)
    task = await stack.add_task("sleep", {"seconds": 60}, timeout_s=120)
    await stack.dispatch(task)
    await assert_eventually(lambda: metric("cadenza_worker_tasks_in_flight") >= 1)
    before = metric("cadenza_worker_tasks_stopped_total", source="broadcast")
    stopped_at = time.monotonic()
    await stop_broadcast(stack, task.run_id)
    result = await stack.result(task, timeout=10)
    assert time.monotonic() - stopped_at < 5  # far inside one heartbeat (20 s)
    assert (result.status, result.tries) == ("cancelled", 1)
    assert result.error is not None
    assert result.error.code == "cancelled"
    assert metric("cadenza_worker_tasks_stopped_total", source="broadcast") == before + 1
    assert metric("cadenza_worker_tasks_in_flight") == 0


async def test_a_stop_broadcast_stops_only_its_runs_tasks(stack: Stack) -> None:
    await stack.start_worker(lease_ttl_s=60)
    doomed = await stack.add_task("sleep", {"seconds": 60}, timeout_s=120)
    other = await stack.add_task("sleep", {"seconds": 1.5}, timeout_s=120)
    await stack.dispatch(doomed)
    await stack.dispatch(other)
    await assert_eventually(lambda: metric("cadenza_worker_tasks_in_flight") >= 2)
    await stop_broadcast(stack, doomed.run_id)
    assert (await stack.result(doomed, timeout=10)).status == "cancelled"
    assert (await stack.result(other, timeout=10)).status == "succeeded"


async def test_without_the_broadcast_the_heartbeat_still_stops_a_cancelled_run(
    stack: Stack,
) -> None:
    """``stop_broadcast=False`` (bench/run_stop.py's baseline): no listener; the Redis
    marker, read by the heartbeat (every 0.5 s here), stops the task, and is counted so."""
    worker = await stack.start_worker(lease_ttl_s=1.5, stop_broadcast=False)
    assert worker._control is None
    task = await stack.add_task("sleep", {"seconds": 60}, timeout_s=120)
    await stack.dispatch(task)
    await assert_eventually(lambda: metric("cadenza_worker_tasks_in_flight") >= 1)
    by = {
        s: metric("cadenza_worker_tasks_stopped_total", source=s)
        for s in ("broadcast", "heartbeat")
    }
    await stack.cancel_run(task.run_id)  # the marker only, as the orchestrator sets it
    assert (await stack.result(task, timeout=10)).status == "cancelled"
    assert metric("cadenza_worker_tasks_stopped_total", source="heartbeat") == by["heartbeat"] + 1
    assert metric("cadenza_worker_tasks_stopped_total", source="broadcast") == by["broadcast"]


async def test_a_task_of_a_run_heard_stopped_is_reported_without_running(stack: Stack) -> None:
    """A claim under way as the broadcast comes (before the orchestrator's Redis marker):
    the worker remembers the stopped run and reports the attempt cancelled, untried."""
    worker = await stack.start_worker(lease_ttl_s=60)
    task = await stack.add_task("sleep", {"seconds": 60}, timeout_s=120)
    await stop_broadcast(stack, task.run_id)
    await assert_eventually(lambda: worker._handler.presence.run_stopped(task.run_id))
    await stack.dispatch(task)
    result = await stack.result(task, timeout=10)
    assert (result.status, result.tries, result.started_at) == ("cancelled", 0, None)


async def test_a_tool_that_finishes_despite_the_stop_keeps_its_output(stack: Stack) -> None:
    """The presence loop cancels the handler's own task; a tool that swallows that and
    returns anyway gets its output reported, and the handler goes on to report it (the
    stop is taken back, so no stray cancellation hits the report)."""

    class Stubborn:
        name = "stubborn"
        side_effects = False

        async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)  # an await after the stop: nothing cancels it
                return {"finished": "anyway"}
            return {"finished": "normally"}

    await stack.start_worker(tools=ToolRegistry([Stubborn()]))
    task = await stack.add_task("stubborn", timeout_s=120)
    await stack.dispatch(task)
    await assert_eventually(lambda: metric("cadenza_worker_tasks_in_flight") >= 1)
    await stack.cancel_run(task.run_id)
    result = await stack.result(task)
    assert (result.status, result.output) == ("succeeded", {"finished": "anyway"})

    async def released() -> bool:
        return await stack.lease_owner(task.task_id) is None

    await assert_eventually(released)  # finish ran: the report was not cut short


async def test_cancelled_run_is_reported_without_starting(stack: Stack) -> None:
    await stack.start_worker()
    task = await stack.add_task("flaky", {"failures": 0, "key": key()})
    await stack.cancel_run(task.run_id)
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.tries, result.started_at) == ("cancelled", 0, None)
    assert (await stack.row(task.task_id)).status == "ready"


async def test_duplicate_delivery_runs_the_tool_once(stack: Stack) -> None:
    acked = metric("cadenza_worker_tasks_skipped_total", reason="done") + metric(
        "cadenza_worker_leases_contended_total"
    )
    await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 0, "key": k})
    await stack.dispatch(task)
    await stack.dispatch(task)  # at-least-once transport: the same task.ready again
    result = await stack.result(task)
    assert result.output == {"calls": 1}

    def duplicate_acked() -> bool:
        now = metric("cadenza_worker_tasks_skipped_total", reason="done") + metric(
            "cadenza_worker_leases_contended_total"
        )
        return now == acked + 1

    await assert_eventually(duplicate_acked)
    assert await stack.flaky_calls(k) == 1
    assert len(stack.results_for(task.task_id)) == 1


async def test_concurrent_delivery_to_two_workers_runs_once(stack: Stack) -> None:
    # Two consumer groups: BOTH workers receive the task.ready, at the same time.
    tries = metric("cadenza_worker_task_tries_total", tool="sleep")
    acked = metric("cadenza_worker_tasks_skipped_total", reason="done") + metric(
        "cadenza_worker_leases_contended_total"
    )
    await stack.start_worker(consumer_group=f"{stack.uid}-a")
    await stack.start_worker(consumer_group=f"{stack.uid}-b")
    task = await stack.add_task("sleep", {"seconds": 0.3})
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "succeeded"

    def other_acked() -> bool:
        now = metric("cadenza_worker_tasks_skipped_total", reason="done") + metric(
            "cadenza_worker_leases_contended_total"
        )
        return now == acked + 1

    await assert_eventually(other_acked)
    assert metric("cadenza_worker_task_tries_total", tool="sleep") == tries + 1
    assert len(stack.results_for(task.task_id)) == 1


async def test_concurrent_handlers_in_two_workers_run_once(stack: Stack) -> None:
    one = await stack.start_worker()
    two = await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 0, "key": k})
    env = stack.envelope(task)
    await asyncio.gather(one.handle(env), two.handle(env), one.handle(env))
    assert await stack.flaky_calls(k) == 1
    await stack.result(task)
    assert len(stack.results_for(task.task_id)) == 1


async def test_done_marker_skips_the_message(stack: Stack) -> None:
    skipped = metric("cadenza_worker_tasks_skipped_total", reason="done")
    await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 0, "key": k})
    hot = stack.resources.hot
    await hot.redis.set(hot.key(keys.task_done(task.task_id, task.attempt)), "succeeded")
    await stack.dispatch(task)
    await assert_eventually(
        lambda: metric("cadenza_worker_tasks_skipped_total", reason="done") == skipped + 1
    )
    assert await stack.flaky_calls(k) == 0
    assert stack.results_for(task.task_id) == []
    assert (await stack.row(task.task_id)).status == "ready"


async def test_stale_attempt_is_skipped_while_a_newer_one_holds_the_lease(stack: Stack) -> None:
    contended = metric("cadenza_worker_leases_contended_total")
    await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 0, "key": k}, attempt=2)
    hot = stack.resources.hot
    await hot.redis.set(hot.key(keys.task_lease(task.task_id)), "other-worker:2", ex=600)
    await stack.dispatch(task.model_copy(update={"attempt": 1}))  # superseded dispatch
    await assert_eventually(
        lambda: metric("cadenza_worker_leases_contended_total") == contended + 1
    )
    assert await stack.flaky_calls(k) == 0
    assert stack.results_for(task.task_id) == []
    assert await stack.lease_owner(task.task_id) == "other-worker:2"


async def test_newer_attempt_takes_the_lease_over_from_an_older_one(stack: Stack) -> None:
    """A re-dispatch (attempt 2) runs although attempt 1's presumed-dead worker still
    holds the lease: liveness is that worker's process heartbeat, not the lease."""
    await stack.start_worker()
    task = await stack.add_task("noop", attempt=2)
    hot = stack.resources.hot
    await hot.redis.set(hot.key(keys.task_lease(task.task_id)), "dead-worker:1", ex=600)
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.attempt) == ("succeeded", 2)


async def test_one_heartbeat_per_worker_process(stack: Stack) -> None:
    worker = await stack.start_worker()
    hot = stack.resources.hot
    alive = hot.key(keys.worker_alive(worker.settings.worker_id))
    assert await hot.redis.exists(alive)  # beating before it claims anything
    tasks = [await stack.add_task("sleep", {"seconds": 0.5}) for _ in range(3)]
    for task in tasks:
        await stack.dispatch(task)
    for task in tasks:
        assert (await stack.result(task)).status == "succeeded"
    assert 0 < await hot.redis.pttl(alive) <= worker.settings.lease_ttl_s * 1000
    workers = [k async for k in hot.redis.scan_iter(match=hot.key("worker:*"), count=10_000)]
    assert workers == [alive.encode()]  # one key for the process, none per task
    await worker.stop()
    assert not await hot.redis.exists(alive)  # a stopped worker says so at once


async def test_effect_journal_replays_a_recorded_call(stack: Stack) -> None:
    await stack.start_worker()
    k = key()
    task = await stack.add_task("flaky", {"failures": 0, "key": k})
    async with stack.resources.sessions() as session, session.begin():
        session.add(
            ToolEffectRecord(
                task_id=task.task_id, attempt=0, call_index=0, tool="flaky", result={"calls": 42}
            )
        )
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.output) == ("succeeded", {"calls": 42})
    assert await stack.flaky_calls(k) == 0  # the tool was not called again


async def test_redispatch_after_a_crash_replays_the_effect(stack: Stack) -> None:
    replayed = metric("cadenza_worker_tool_calls_total", tool="flaky", outcome="replayed")
    await stack.start_worker()
    k = key()
    first = await stack.add_task("flaky", {"failures": 0, "key": k})
    await stack.dispatch(first)
    assert (await stack.result(first)).output == {"calls": 1}
    async with stack.resources.sessions() as session:
        effect = await session.get(ToolEffectRecord, (first.task_id, 0, 0))
        assert effect is not None
        assert (effect.tool, effect.result) == ("flaky", {"calls": 1})
    # The orchestrator never saw that result (say the worker died before publishing it):
    # its sweeper re-dispatches the task as attempt 2.
    second = await stack.redispatch(first)
    result = await stack.result(second)
    assert (result.status, result.attempt, result.output) == ("succeeded", 2, {"calls": 1})
    assert await stack.flaky_calls(k) == 1
    assert metric("cadenza_worker_tool_calls_total", tool="flaky", outcome="replayed") == (
        replayed + 1
    )


async def test_pure_tools_are_not_journaled(stack: Stack) -> None:
    await stack.start_worker()
    task = await stack.add_task("transform", {"a": 1})
    await stack.dispatch(task)
    await stack.result(task)
    async with stack.resources.sessions() as session:
        assert await session.get(ToolEffectRecord, (task.task_id, 0, 0)) is None


async def test_claim_check_in_and_out(stack: Stack) -> None:
    await stack.start_worker(claim_check_bytes=1024)
    run_id = str(uuid.uuid4())
    params = {"blob": "x" * 5000, "n": 1}
    ref = f"runs/{run_id}/tasks/big/params.json"
    await stack.resources.objects.put(ref, json.dumps(params).encode(), "application/json")
    task = await stack.add_task("transform", run_id=run_id, params_ref=ref)
    small = await stack.add_task("transform", {"small": True}, run_id=run_id)
    await stack.dispatch(task)
    await stack.dispatch(small)

    result = await stack.result(task)
    assert result.status == "succeeded"
    assert result.output is None
    assert result.output_ref == output_key(task)
    assert result.output_ref == f"runs/{run_id}/tasks/{task.task_id}/1/output.json"
    assert json.loads(await stack.resources.objects.get(result.output_ref)) == params
    inline = await stack.result(small)
    assert (inline.output, inline.output_ref) == ({"small": True}, None)


async def test_missing_claim_checked_params_fail_the_task(stack: Stack) -> None:
    await stack.start_worker()
    task = await stack.add_task("transform", params_ref="runs/nope/params.json")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert (result.status, result.tries) == ("failed", 0)
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("params_unavailable", False)


async def test_http_request_through_the_worker(stack: Stack, http_server: HttpServer) -> None:
    # 127.0.0.1 allowlisted for writes (else the POST waits for approval: test_holds.py).
    await stack.start_worker(http_allow_private=True, approval_allow_hosts=["127.0.0.1"])
    echo = await stack.add_task(
        "http_request", {"url": http_server.url("/echo"), "method": "POST", "json": {"x": 1}}
    )
    flaky = await stack.add_task("http_request", {"url": http_server.url("/flaky")})
    missing = await stack.add_task("http_request", {"url": http_server.url("/status/404")})
    for task in (echo, flaky, missing):
        await stack.dispatch(task)
    result = await stack.result(echo)
    assert result.status == "succeeded"
    assert result.output["status"] == 200
    assert result.output["json"]["body"] == '{"x":1}'
    result = await stack.result(flaky)  # 503, 503, then 200
    assert (result.status, result.tries, result.output["json"]) == ("succeeded", 3, {"hit": 3})
    result = await stack.result(missing)
    assert result.error is not None
    assert (result.status, result.tries, result.error.code) == ("failed", 1, "http_404")


async def test_non_json_output_fails_the_task(stack: Stack) -> None:
    class Weird:
        name = "weird"
        side_effects = False

        async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
            return {"when": object()}

    await stack.start_worker(tools=ToolRegistry([Weird()]))
    task = await stack.add_task("weird")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.error is not None
    assert (result.status, result.error.code) == ("failed", "invalid_output")


async def test_a_new_kind_plugs_in_with_the_executor_interface(stack: Stack) -> None:
    class EchoAgent:
        def label(self, task: TaskReady) -> str:
            return f"agent:{task.name}"

        async def execute(self, call: TaskCall) -> Any:
            return {"agent": call.task.name, "prompt": call.params["prompt"]}

    tools = builtin_tools(stack.settings())
    executors = ExecutorRegistry(
        {"tool": ToolExecutor(tools, EffectJournal(stack.resources.sessions))}
    )
    executors.register("agent", EchoAgent())
    await stack.start_worker(tools=tools, executors=executors)
    task = await stack.add_task("triage", {"prompt": "hi"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.output == {"agent": "triage", "prompt": "hi"}


async def test_lost_lease_abandons_the_task(stack: Stack) -> None:
    lost = metric("cadenza_worker_leases_lost_total")
    await stack.start_worker()
    task = await stack.add_task("sleep", {"seconds": 60}, timeout_s=120)
    await stack.dispatch(task)

    async def running() -> bool:
        return await stack.lease_owner(task.task_id) is not None

    await assert_eventually(running)
    hot = stack.resources.hot
    await hot.redis.set(hot.key(keys.task_lease(task.task_id)), "someone-else:2", px=60_000)
    await assert_eventually(lambda: metric("cadenza_worker_leases_lost_total") == lost + 1)
    await assert_eventually(lambda: metric("cadenza_worker_tasks_in_flight") == 0)
    assert stack.results_for(task.task_id) == []  # the new holder reports it
    assert await stack.lease_owner(task.task_id) == "someone-else:2"
    # Its timeline closes the attempt it started: released, the lease lost.
    await assert_eventually(lambda: "task.released" in stack.event_kinds(task.task_id))
    assert stack.event_kinds(task.task_id) == ["task.started", "task.released"]
    released = [e.payload for e in stack.events if e.payload.kind == "task.released"]
    assert released[-1].data["reason"] == "lease_lost"


async def test_stop_hands_running_tasks_back_and_they_resume(stack: Stack) -> None:
    first = await stack.start_worker(shutdown_grace_s=0.05)
    task = await stack.add_task("sleep", {"seconds": 0.5})
    await stack.dispatch(task)

    async def running() -> bool:
        return await stack.lease_owner(task.task_id) is not None

    await assert_eventually(running)
    await first.stop()  # grace runs out: the task is cancelled, its message left unacked
    assert await stack.lease_owner(task.task_id) is None
    assert stack.results_for(task.task_id) == []
    await stack.start_worker()  # redelivered to the next worker of the group: resumed
    result = await stack.result(task)
    assert result.status == "succeeded"
    await assert_eventually(
        lambda: (
            [
                e.payload.data.get("resumed")
                for e in stack.events
                if e.payload.kind == "task.started"
            ]
            == [False, True]
        )
    )


async def test_unexpected_event_on_task_ready_is_dead_lettered(stack: Stack) -> None:
    await stack.start_worker()
    stray = Envelope(
        payload=RunEvent(run_id="r", kind="oops"), source="/tests", plan_id="r", task_id="x"
    )
    await stack.resources.publisher.publish(Topic.TASK_READY, stray)
    await assert_eventually(lambda: len(stack.dead) == 1)
    assert stack.dead[0].payload.error_code == "unexpected_event"
    task = await stack.add_task("noop")  # the worker carries on
    await stack.dispatch(task)
    assert (await stack.result(task)).status == "succeeded"


async def test_spans_per_task_and_per_tool_call(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = capture_spans(
        monkeypatch, "cadenza_worker.handler.tracer", "cadenza_worker.kinds.tracer"
    )
    await stack.start_worker()
    task = await stack.add_task("flaky", {"failures": 1, "key": key()})
    await stack.dispatch(task)
    await stack.result(task)

    async def task_span_ended() -> bool:
        # The task span closes just after the result is published (markers, metrics).
        return any(s.name == "task flaky" for s in exporter.get_finished_spans())

    await assert_eventually(task_span_ended, message="the task span never ended")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    tool_spans = [s for s in exporter.get_finished_spans() if s.name == "tool flaky"]
    assert [s.attributes["cadenza.try"] for s in tool_spans] == [1, 2]  # type: ignore[index]
    assert tool_spans[0].attributes["cadenza.task_id"] == task.task_id  # type: ignore[index]
    task_span = spans["task flaky"]
    assert task_span.attributes["cadenza.task.status"] == "succeeded"  # type: ignore[index]
    assert task_span.attributes["cadenza.task.tries"] == 2  # type: ignore[index]
    assert all(s.parent and s.parent.span_id == task_span.context.span_id for s in tool_spans)  # type: ignore[union-attr]
