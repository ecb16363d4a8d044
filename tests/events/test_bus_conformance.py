"""ONE conformance suite for every bus implementation (in-process and real Kafka)."""

from __future__ import annotations

import asyncio
import base64
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cadenza_events import (
    Bus,
    Consumer,
    ConsumerOptions,
    DeadLetter,
    Envelope,
    NonRetryableError,
    RetryPolicy,
    RunEvent,
    RunStopped,
    TaskReady,
    Topic,
    encode,
)
from prometheus_client import REGISTRY
from support import assert_eventually

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


def run_event(plan: str, seq: int, tenant: str = "acme") -> Envelope[RunEvent]:
    return Envelope(
        payload=RunEvent(run_id=plan, kind="test", data={"seq": seq}),
        source="/tests",
        tenant_id=tenant,
        plan_id=plan,
    )


async def collect_dlq(bus: Bus, group: str) -> tuple[list[Envelope[Any]], Any]:
    letters: list[Envelope[Any]] = []

    async def handle(env: Envelope[Any]) -> None:
        letters.append(env)

    consumer = bus.consumer([Topic.DLQ], group, handle)
    await consumer.start()
    return letters, consumer


async def test_envelope_and_headers_round_trip(bus: Bus, unique_id: str) -> None:
    got: list[Envelope[Any]] = []

    async def handle(env: Envelope[Any]) -> None:
        got.append(env)

    consumer = bus.consumer([Topic.TASK_READY], f"{unique_id}-g", handle)
    await consumer.start()
    sent = Envelope(
        payload=TaskReady(
            run_id="run-1",
            task_id="task-1",
            node_id="fetch",
            name="transform",
            params={"x": [1, "two"]},
        ),
        source="/orchestrator",
        tenant_id="acme",
        plan_id="run-1",
        task_id="task-1",
        attempt=2,
        subject="fetch",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="vendor=1",
    )
    await bus.publisher.publish(Topic.TASK_READY, sent)
    await assert_eventually(lambda: got, message="event never arrived")
    await consumer.stop()
    (received,) = got
    assert received == sent  # every attribute, extension and the typed payload survive
    assert isinstance(received.payload, TaskReady)
    assert received.payload.params == {"x": [1, "two"]}


async def test_per_key_ordering_under_concurrency(bus: Bus, unique_id: str) -> None:
    seen: dict[str, list[int]] = defaultdict(list)

    async def handle(env: Envelope[Any]) -> None:
        await asyncio.sleep(random.random() / 200)  # scramble completion order across keys
        seen[env.plan_id or ""].append(env.payload.data["seq"])

    consumer = bus.consumer(
        [Topic.RUN_EVENTS], f"{unique_id}-g", handle, ConsumerOptions(concurrency=16)
    )
    await consumer.start()
    plans = [f"plan-{i}" for i in range(6)]
    await bus.publisher.publish_many(
        [(Topic.RUN_EVENTS, run_event(p, seq)) for seq in range(40) for p in plans]
    )
    await assert_eventually(lambda: sum(map(len, seen.values())) == 240, timeout=30)
    await consumer.stop()
    for plan in plans:
        assert seen[plan] == list(range(40)), f"{plan} out of order"


async def wait_balanced(a: Consumer, b: Consumer, every: set[tuple[str, int]]) -> None:
    """Until the two members of a group hold ``every`` partition between them, each some
    and none both."""

    def balanced() -> bool:
        sa, sb = a.assignment, b.assignment  # type: ignore[attr-defined]
        return bool(sa) and bool(sb) and not (sa & sb) and (sa | sb) == every

    await assert_eventually(balanced, timeout=30, message="group never balanced")


async def test_two_consumers_in_one_group_share_partitions(bus: Bus, unique_id: str) -> None:
    handled: dict[str, list[int]] = {"a": [], "b": []}

    def handler(name: str) -> Any:
        async def handle(env: Envelope[Any]) -> None:
            handled[name].append(env.payload.data["seq"])

        return handle

    group = f"{unique_id}-g"
    a = bus.consumer([Topic.RUN_EVENTS], group, handler("a"))
    b = bus.consumer([Topic.RUN_EVENTS], group, handler("b"))
    await a.start()
    await b.start()
    all_partitions = {(bus.registry.name(Topic.RUN_EVENTS), p) for p in range(3)}

    await wait_balanced(a, b, all_partitions)
    await bus.publisher.publish_many(
        [(Topic.RUN_EVENTS, run_event(f"plan-{i}", i)) for i in range(60)]
    )
    await assert_eventually(lambda: len(handled["a"]) + len(handled["b"]) >= 60, timeout=30)
    await a.stop()
    await b.stop()
    assert handled["a"], "both members must get work"
    assert handled["b"], "both members must get work"
    assert sorted(handled["a"] + handled["b"]) == list(range(60)), "each message exactly once"


async def test_a_co_partitioned_group_gives_each_member_whole_partition_numbers(
    bus: Bus, unique_id: str
) -> None:
    """``ConsumerOptions.co_partitioned``: two members of a group on two topics keyed alike
    (the orchestrator's plan.requested and task.result) share the partitions so that each
    partition number of both topics is one member's — a key's events of either topic are
    handled in one process."""

    async def ignore(env: Envelope[Any]) -> None:
        return None

    group = f"{unique_id}-g"
    topics = [Topic.PLAN_REQUESTED, Topic.TASK_RESULT]
    options = ConsumerOptions(co_partitioned=True)
    a = bus.consumer(topics, group, ignore, options)
    b = bus.consumer(topics, group, ignore, options)
    await a.start()
    await b.start()
    names = [bus.registry.name(t) for t in topics]
    every = {(name, p) for name in names for p in range(3)}

    await wait_balanced(a, b, every)
    for member in (a, b):
        numbers = [{p for t, p in member.assignment if t == name} for name in names]  # type: ignore[attr-defined]
        assert numbers[0] == numbers[1], f"split partition numbers: {member.assignment}"  # type: ignore[attr-defined]
    await b.stop()
    await a.stop()


async def test_a_member_hears_the_partitions_a_rebalance_takes(bus: Bus, unique_id: str) -> None:
    """``ConsumerOptions.on_revoked`` and ``on_assigned``: a second member joins; the first
    hears every partition it gave up (the orchestrator then keeps only the runs of those it
    gets back), among them all those the second now has, and then what it holds now — and
    a member alone in its group hears of no revocation."""
    revoked: list[set[tuple[str, int]]] = []
    assigned: list[set[tuple[str, int]]] = []

    async def ignore(env: Envelope[Any]) -> None:
        return None

    group = f"{unique_id}-g"
    options = ConsumerOptions(on_revoked=revoked.append, on_assigned=assigned.append)
    a = bus.consumer([Topic.RUN_EVENTS], group, ignore, options)
    await a.start()
    topic = bus.registry.name(Topic.RUN_EVENTS)
    await assert_eventually(lambda: len(a.assignment) == 3, timeout=30)  # type: ignore[attr-defined]
    assert revoked == []
    assert assigned[-1] == {(topic, p) for p in range(3)}
    b = bus.consumer([Topic.RUN_EVENTS], group, ignore)
    await b.start()
    await assert_eventually(lambda: bool(b.assignment), timeout=30)  # type: ignore[attr-defined]
    await assert_eventually(
        lambda: b.assignment <= set().union(*revoked),  # type: ignore[attr-defined]
        timeout=30,
        message="the first member was not told what it gave up",
    )
    assert all(t == topic for given_up in revoked for t, _ in given_up)
    await assert_eventually(
        lambda: assigned[-1] == a.assignment and not assigned[-1] & b.assignment,  # type: ignore[attr-defined]
        timeout=30,
        message="the first member was not told what it holds after the rebalance",
    )
    await b.stop()
    await a.stop()


async def test_uncommitted_messages_are_redelivered_after_consumer_dies(
    bus: Bus, unique_id: str
) -> None:
    group = f"{unique_id}-g"
    entered = asyncio.Event()

    async def stuck(env: Envelope[Any]) -> None:
        entered.set()
        await asyncio.Event().wait()  # the process "dies" before finishing

    first = bus.consumer([Topic.RUN_EVENTS], group, stuck)
    await first.start()
    await bus.publisher.publish(Topic.RUN_EVENTS, run_event("plan-x", 7))
    await asyncio.wait_for(entered.wait(), 30)
    await first.stop(grace_s=0)  # abandon in-flight work: nothing committed

    got: list[int] = []

    async def handle(env: Envelope[Any]) -> None:
        got.append(env.payload.data["seq"])

    second = bus.consumer([Topic.RUN_EVENTS], group, handle)
    await second.start()
    await assert_eventually(lambda: got == [7], timeout=30, message="message not redelivered")
    await second.stop()


async def test_committed_messages_are_not_redelivered(bus: Bus, unique_id: str) -> None:
    group = f"{unique_id}-g"
    first_seen: list[int] = []

    async def record_first(env: Envelope[Any]) -> None:
        first_seen.append(env.payload.data["seq"])

    first = bus.consumer([Topic.RUN_EVENTS], group, record_first)
    await first.start()
    await bus.publisher.publish_many([(Topic.RUN_EVENTS, run_event(f"p{i}", i)) for i in range(5)])
    await assert_eventually(lambda: len(first_seen) == 5, timeout=30)
    await first.stop()  # graceful: commits what it handled

    second_seen: list[int] = []

    async def record_second(env: Envelope[Any]) -> None:
        second_seen.append(env.payload.data["seq"])

    second = bus.consumer([Topic.RUN_EVENTS], group, record_second)
    await second.start()
    await bus.publisher.publish(Topic.RUN_EVENTS, run_event("marker", 99))
    await assert_eventually(lambda: 99 in second_seen, timeout=30)
    await asyncio.sleep(0.3)
    await second.stop()
    assert second_seen == [99]


async def test_graceful_stop_finishes_in_flight_work(bus: Bus, unique_id: str) -> None:
    group = f"{unique_id}-g"
    started = asyncio.Event()
    finished: list[int] = []

    async def slow(env: Envelope[Any]) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(env.payload.data["seq"])

    first = bus.consumer([Topic.RUN_EVENTS], group, slow)
    await first.start()
    await bus.publisher.publish(Topic.RUN_EVENTS, run_event("p", 1))
    await asyncio.wait_for(started.wait(), 30)
    await first.stop(grace_s=5)
    assert finished == [1]

    again: list[int] = []

    async def record(env: Envelope[Any]) -> None:
        again.append(env.payload.data["seq"])

    second = bus.consumer([Topic.RUN_EVENTS], group, record)
    await second.start()
    await bus.publisher.publish(Topic.RUN_EVENTS, run_event("marker", 2))
    await assert_eventually(lambda: 2 in again, timeout=30)
    await second.stop()
    assert again == [2], "work finished during graceful stop must have been committed"


async def test_undecodable_and_invalid_messages_go_to_dlq_and_consumer_keeps_going(
    bus: Bus, unique_id: str
) -> None:
    handled: list[int] = []

    async def handle(env: Envelope[Any]) -> None:
        handled.append(env.payload.data["seq"])

    letters, dlq = await collect_dlq(bus, f"{unique_id}-dlq")
    consumer = bus.consumer([Topic.RUN_EVENTS], f"{unique_id}-g", handle)
    await consumer.start()
    topic = bus.registry.name(Topic.RUN_EVENTS)
    await bus.publisher.publish_raw(topic, b"plan-a", b"\xff\x00 garbage", [])
    await bus.publisher.publish_raw(
        topic,
        b"plan-a",
        b'{"kind": "missing run_id"}',
        [
            ("ce_id", b"1"),
            ("ce_source", b"/evil"),
            ("ce_type", b"cadenza.run.event.v1"),
            ("ce_specversion", b"1.0"),
            ("ce_tenantid", b"acme"),
            ("content-type", b"application/json"),
        ],
    )
    await bus.publisher.publish(Topic.RUN_EVENTS, run_event("plan-a", 3))
    await assert_eventually(lambda: handled == [3] and len(letters) == 2, timeout=30)
    await consumer.stop()
    await dlq.stop()
    reasons = sorted(env.payload.reason for env in letters)
    assert all(isinstance(env.payload, DeadLetter) for env in letters)
    assert any("invalid payload" in r and "run_id" in r for r in reasons), reasons
    assert any("not a CloudEvent" in r for r in reasons), reasons
    garbage = next(e.payload for e in letters if "not a CloudEvent" in e.payload.reason)
    assert base64.b64decode(garbage.value_b64) == b"\xff\x00 garbage"  # nothing is lost
    assert garbage.original_topic == topic
    assert garbage.consumer_group == bus.registry.group(f"{unique_id}-g")
    invalid = next(e for e in letters if "invalid payload" in e.payload.reason)
    assert invalid.tenant_id == "acme"


async def test_failing_handler_is_retried_then_dead_lettered(bus: Bus, unique_id: str) -> None:
    calls: dict[int, int] = defaultdict(int)

    async def handle(env: Envelope[Any]) -> None:
        seq = env.payload.data["seq"]
        calls[seq] += 1
        if seq == 1:
            raise RuntimeError("always broken")
        if seq == 2:
            raise NonRetryableError("bad request", code="bad_request")
        if seq == 3 and calls[seq] < 3:
            raise ConnectionError("flaky")

    letters, dlq = await collect_dlq(bus, f"{unique_id}-dlq")
    consumer = bus.consumer(
        [Topic.RUN_EVENTS], f"{unique_id}-g", handle, ConsumerOptions(retry=FAST_RETRY)
    )
    await consumer.start()
    await bus.publisher.publish_many(
        [(Topic.RUN_EVENTS, run_event(f"plan-{i}", i)) for i in (1, 2, 3)]
    )
    await assert_eventually(lambda: len(letters) == 2 and calls[3] == 3, timeout=30)
    await asyncio.sleep(0.2)
    await consumer.stop()
    await dlq.stop()
    assert calls == {1: 3, 2: 1, 3: 3}  # retried per policy; non-retryable fails at once
    by_plan = {env.plan_id: env.payload for env in letters}
    assert set(by_plan) == {"plan-1", "plan-2"}  # the flaky one recovered
    assert by_plan["plan-1"].attempts == 3
    assert "always broken" in by_plan["plan-1"].reason
    assert by_plan["plan-2"].attempts == 1
    assert by_plan["plan-2"].error_code == "bad_request"


async def test_ping_round_trips_to_the_broker(bus: Bus) -> None:
    await bus.ping()  # raises when the broker is unreachable


async def test_outage_errors_pause_the_message_instead_of_dead_lettering(
    bus: Bus, unique_id: str
) -> None:
    """A store outage outlasting the retry policy holds the message (and what follows it
    on its key) until the store is back; nothing is dead-lettered, order is kept."""
    store_down = True
    handled: list[int] = []
    tries = 0

    class StoreDown(Exception):
        pass

    async def handle(env: Envelope[Any]) -> None:
        nonlocal tries
        seq = env.payload.data["seq"]
        if seq == 1:
            tries += 1
            if store_down:
                raise StoreDown("database unreachable")
        handled.append(seq)

    letters, dlq = await collect_dlq(bus, f"{unique_id}-dlq")
    consumer = bus.consumer(
        [Topic.RUN_EVENTS],
        f"{unique_id}-g",
        handle,
        ConsumerOptions(
            retry=FAST_RETRY,
            is_outage=lambda exc: isinstance(exc, StoreDown),
            outage_max_backoff_s=0.05,
        ),
    )
    await consumer.start()
    await bus.publisher.publish_many([(Topic.RUN_EVENTS, run_event("plan-o", i)) for i in (1, 2)])
    # Far more tries than the policy's 3, and the next event of the key still waits.
    await assert_eventually(lambda: tries >= 3 * FAST_RETRY.max_attempts, timeout=30)
    assert handled == []
    assert letters == []
    store_down = False
    await assert_eventually(lambda: handled == [1, 2], timeout=30)
    await consumer.stop()
    await dlq.stop()
    assert letters == []


async def test_batch_consumer_gets_partition_batches_in_order(bus: Bus, unique_id: str) -> None:
    batches: list[list[tuple[str | None, int]]] = []

    async def handle(envs: Sequence[Envelope[Any]]) -> None:
        batches.append([(e.plan_id, e.payload.data["seq"]) for e in envs])

    consumer = bus.batch_consumer([Topic.RUN_EVENTS], f"{unique_id}-g", handle)
    sent = [(f"plan-{i % 3}", i) for i in range(60)]
    await bus.publisher.publish_many([(Topic.RUN_EVENTS, run_event(p, i)) for p, i in sent])
    await consumer.start()
    await assert_eventually(lambda: sum(len(b) for b in batches) == 60, timeout=30)
    await consumer.stop()
    assert any(len(b) > 1 for b in batches)  # fetched together, handed over together
    for plan in ("plan-0", "plan-1", "plan-2"):  # a key's events keep their order
        seqs = [seq for b in batches for p, seq in b if p == plan]
        assert seqs == sorted(seqs)
        assert len(seqs) == 20


async def test_a_member_knows_which_keys_it_holds(bus: Bus, unique_id: str) -> None:
    """``Consumer.holds_key``: with two members in a group, a key's records are handled by
    the member that says it holds that key, and by no other (the orchestrator's sweeper
    looks only at the runs whose results it handles)."""
    handled_by: dict[str, set[str]] = defaultdict(set)

    def handler(name: str) -> Any:
        async def handle(envs: Sequence[Envelope[Any]]) -> None:
            for env in envs:
                handled_by[str(env.plan_id)].add(name)

        return handle

    group = f"{unique_id}-g"
    a = bus.batch_consumer([Topic.RUN_EVENTS], group, handler("a"))
    b = bus.batch_consumer([Topic.RUN_EVENTS], group, handler("b"))
    await a.start()
    await b.start()
    topic = bus.registry.name(Topic.RUN_EVENTS)

    await wait_balanced(a, b, {(topic, p) for p in range(3)})
    keys = [f"plan-{i}" for i in range(30)]
    await bus.publisher.publish_many([(Topic.RUN_EVENTS, run_event(k, 0)) for k in keys])
    await assert_eventually(lambda: len(handled_by) == 30, timeout=30)
    members = (("a", a), ("b", b))
    holders = {k: {n for n, c in members if c.holds_key(Topic.RUN_EVENTS, k)} for k in keys}
    await a.stop()
    await b.stop()
    assert holders == handled_by, "holds_key disagrees with where the records went"
    assert {n for names in holders.values() for n in names} == {"a", "b"}


async def test_records_fetched_while_a_batch_waits_join_it(bus: Bus, unique_id: str) -> None:
    """A partition's batch that waits behind the one being handled takes the records of
    its partition fetched meanwhile: a backlog reaches the handler as one batch, in order,
    not as one small batch per fetch."""
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def handle(envs: Sequence[Envelope[Any]]) -> None:
        batches.append([e.payload.data["seq"] for e in envs])
        if len(batches) == 1:
            await release.wait()  # the first batch holds the partition

    options = ConsumerOptions(concurrency=64)  # room for the whole backlog
    consumer = bus.batch_consumer([Topic.RUN_EVENTS], f"{unique_id}-g", handle, options)
    await consumer.start()
    try:
        await bus.publisher.publish(Topic.RUN_EVENTS, run_event("plan-j", 0))
        await assert_eventually(lambda: len(batches) == 1, timeout=30)
        for seq in range(1, 31):  # thirty records, each fetched before the next is sent
            await bus.publisher.publish(Topic.RUN_EVENTS, run_event("plan-j", seq))
            await assert_eventually(
                lambda n=seq + 1: in_flight(consumer.group) == n,
                timeout=30,  # type: ignore[misc]
            )
        release.set()
        await assert_eventually(lambda: sum(len(b) for b in batches) == 31, timeout=30)
    finally:
        release.set()
        await consumer.stop()
    assert batches[0] == [0]
    assert [seq for b in batches for seq in b] == list(range(31))  # in order, each once
    assert len(batches) == 2, batches  # all thirty waited together: one more call


def in_flight(group: str) -> float:
    """The consumer's ``cadenza_bus_inflight`` gauge: records fetched, not yet handled."""
    return REGISTRY.get_sample_value("cadenza_bus_inflight", {"group": group}) or 0.0


async def test_batches_in_flight_hands_batches_over_one_at_a_time(bus: Bus, unique_id: str) -> None:
    """``batches_in_flight=1``: batches of different partitions never overlap, and every
    key's records still arrive once and in order."""
    inside = 0
    most = 0
    seen: list[tuple[str | None, int]] = []

    async def handle(envs: Sequence[Envelope[Any]]) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.01)  # an await inside the handler, as a transaction has
        seen.extend((e.plan_id, e.payload.data["seq"]) for e in envs)
        inside -= 1

    options = ConsumerOptions(batches_in_flight=1)
    consumer = bus.batch_consumer([Topic.RUN_EVENTS], f"{unique_id}-g", handle, options)
    sent = [(f"plan-{i % 6}", i) for i in range(120)]
    await consumer.start()
    try:
        for chunk in range(0, 120, 10):
            await bus.publisher.publish_many(
                [(Topic.RUN_EVENTS, run_event(p, i)) for p, i in sent[chunk : chunk + 10]]
            )
        await assert_eventually(lambda: len(seen) == 120, timeout=30)
    finally:
        await consumer.stop()
    assert most == 1
    for plan in {p for p, _ in sent}:
        assert [i for p, i in seen if p == plan] == [i for p, i in sent if p == plan]


async def test_batches_in_flight_counts_per_topic(bus: Bus, unique_id: str) -> None:
    """A batch of one topic that is still running never holds up another topic's batch
    (the orchestrator: a backlog of results never delays a new run's plan)."""
    release = asyncio.Event()
    got: list[str] = []

    async def handle(envs: Sequence[Envelope[Any]]) -> None:
        got.extend(e.type for e in envs)
        if isinstance(envs[0].payload, RunEvent):
            await release.wait()

    options = ConsumerOptions(batches_in_flight=1)
    topics = [Topic.RUN_EVENTS, Topic.TASK_READY]
    consumer = bus.batch_consumer(topics, f"{unique_id}-g", handle, options)
    await consumer.start()
    ready = TaskReady(run_id="run-t", task_id="task-t", node_id="n", name="noop", params={})
    try:
        await bus.publisher.publish(Topic.RUN_EVENTS, run_event("plan-t", 0))
        await assert_eventually(lambda: len(got) == 1, timeout=30)
        await bus.publisher.publish(
            Topic.TASK_READY,
            Envelope(
                payload=ready, source="/tests", tenant_id="acme", plan_id="run-t", task_id="task-t"
            ),
        )
        await assert_eventually(lambda: len(got) == 2, timeout=30)  # the other still runs
        assert not release.is_set()
    finally:
        release.set()
        await consumer.stop()


async def test_batch_with_a_poison_message_dead_letters_only_it(bus: Bus, unique_id: str) -> None:
    handled: list[int] = []
    calls: list[int] = []

    async def handle(envs: Sequence[Envelope[Any]]) -> None:
        calls.append(len(envs))
        if any(e.payload.data["seq"] == 3 for e in envs):
            raise NonRetryableError("cannot apply 3", code="poison")
        handled.extend(e.payload.data["seq"] for e in envs)

    letters, dlq = await collect_dlq(bus, f"{unique_id}-dlq")
    consumer = bus.batch_consumer(
        [Topic.RUN_EVENTS], f"{unique_id}-g", handle, ConsumerOptions(retry=FAST_RETRY)
    )
    await bus.publisher.publish_many([(Topic.RUN_EVENTS, run_event("plan-p", i)) for i in range(6)])
    await consumer.start()
    await assert_eventually(lambda: len(handled) == 5 and len(letters) == 1, timeout=30)
    await consumer.stop()
    await dlq.stop()
    assert sorted(handled) == [0, 1, 2, 4, 5]
    assert letters[0].payload.error_code == "poison"
    assert letters[0].payload.offset == 3


async def test_a_consumer_that_lets_fetches_wait_still_gets_a_trickle_promptly(
    bus: Bus, unique_id: str
) -> None:
    """``fetch_wait_ms``: the broker gathers up to 16 KiB per fetch, but never holds a
    fetch longer than the wait: records far below that size still arrive, in order."""
    got: list[int] = []

    async def handle(envs: Sequence[Envelope[Any]]) -> None:
        got.extend(e.payload.data["seq"] for e in envs)

    options = ConsumerOptions(fetch_wait_ms=50)
    consumer = bus.batch_consumer([Topic.RUN_EVENTS], f"{unique_id}-g", handle, options)
    await consumer.start()
    try:
        for seq in range(5):
            await bus.publisher.publish(Topic.RUN_EVENTS, run_event("plan-t", seq))
            await assert_eventually(lambda seq=seq: seq in got, timeout=10)
    finally:
        await consumer.stop()
    assert got == [0, 1, 2, 3, 4]


# -- broadcast listeners (Bus.listener) ------------------------------------------------------


def run_stopped(run_id: str) -> Envelope[RunStopped]:
    return Envelope(
        payload=RunStopped(run_id=run_id, status="cancelled"),
        source="/tests",
        tenant_id="acme",
        plan_id=run_id,
    )


async def test_every_listener_hears_every_record(bus: Bus, unique_id: str) -> None:
    """Unlike a group's members, two listeners both get each record (a control message
    must reach every worker process), in order per run, whatever partition it lands on."""
    heard: dict[str, list[str]] = {"a": [], "b": []}

    def hear(name: str) -> Any:
        async def handle(env: Envelope[Any]) -> None:
            heard[name].append(env.payload.run_id)

        return handle

    listeners = [bus.listener([Topic.RUN_CONTROL], hear(n), f"{unique_id}-{n}") for n in heard]
    for listener in listeners:
        await listener.start()
    try:
        runs = [f"run-{i}" for i in range(12)]  # spread over the partitions
        await bus.publisher.publish_many([(Topic.RUN_CONTROL, run_stopped(r)) for r in runs])
        await assert_eventually(lambda: all(len(h) == len(runs) for h in heard.values()))
        assert sorted(heard["a"]) == sorted(heard["b"]) == sorted(runs)
    finally:
        for listener in listeners:
            await listener.stop()


async def test_a_listener_hears_only_what_is_published_after_it_started(
    bus: Bus, unique_id: str
) -> None:
    await bus.publisher.publish(Topic.RUN_CONTROL, run_stopped("before"))
    heard: list[str] = []

    async def handle(env: Envelope[Any]) -> None:
        heard.append(env.payload.run_id)

    listener = bus.listener([Topic.RUN_CONTROL], handle, f"{unique_id}-late")
    await listener.start()
    try:
        await bus.publisher.publish(Topic.RUN_CONTROL, run_stopped("after"))
        await assert_eventually(lambda: heard == ["after"])
    finally:
        await listener.stop()


async def test_a_failing_listener_handler_skips_the_record_and_goes_on(
    bus: Bus, unique_id: str
) -> None:
    """No retries, no dead letters: a control message is news or nothing."""
    heard: list[str] = []

    async def handle(env: Envelope[Any]) -> None:
        if env.payload.run_id == "bad":
            raise RuntimeError("boom")
        heard.append(env.payload.run_id)

    failed = REGISTRY.get_sample_value(
        "cadenza_bus_broadcast_messages_total",
        {"topic": bus.registry.name(Topic.RUN_CONTROL), "outcome": "failed"},
    )
    listener = bus.listener([Topic.RUN_CONTROL], handle, f"{unique_id}-bad")
    await listener.start()
    try:
        for run_id in ("bad", "good"):  # one key → one partition → this order
            env = run_stopped(run_id)
            await bus.publisher.publish_raw(
                bus.registry.name(Topic.RUN_CONTROL),
                b"same-key",
                *encode(env, "same-key")[1:],
            )
        await assert_eventually(lambda: heard == ["good"])
        after = REGISTRY.get_sample_value(
            "cadenza_bus_broadcast_messages_total",
            {"topic": bus.registry.name(Topic.RUN_CONTROL), "outcome": "failed"},
        )
        assert (after or 0) - (failed or 0) == 1
    finally:
        await listener.stop()


async def test_published_messages_are_counted_per_topic(bus: Bus, unique_id: str) -> None:
    def published(topic: Topic) -> float:
        name = bus.registry.name(topic)
        return REGISTRY.get_sample_value("cadenza_bus_published_total", {"topic": name}) or 0.0

    before = {t: published(t) for t in (Topic.RUN_EVENTS, Topic.RUN_CONTROL)}
    await bus.publisher.publish_many(
        [(Topic.RUN_EVENTS, run_event(f"{unique_id}-{i}", i)) for i in range(7)]
        + [(Topic.RUN_CONTROL, run_stopped(f"{unique_id}-r{i}")) for i in range(2)]
    )
    await bus.publisher.publish(Topic.RUN_EVENTS, run_event(unique_id, 8))
    assert published(Topic.RUN_EVENTS) - before[Topic.RUN_EVENTS] == 8
    assert published(Topic.RUN_CONTROL) - before[Topic.RUN_CONTROL] == 2
