"""The trigger consumer in-process (the in-memory bus stands in for Kafka; the e2e suite
runs it on Kafka): backpressure at a tenant's run limit, poison dead-lettered, a failed
reload of the definitions counted while the ones read last stay in force."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_events import DeadLetter, Topic, decode
from cadenza_events.memory import MemoryBus
from cadenza_runtime import Resources
from cadenza_state import RunRecord, RunStatus, TriggerRecord
from cadenza_trigger import TriggerConsumer, TriggerSettings
from cadenza_trigger import consumer as consumer_module
from cadenza_trigger.metrics import BACKPRESSURE
from prometheus_client import REGISTRY
from sqlalchemy import select, update
from support import assert_eventually
from trigger_support import add_workflow

UNIT = pytest.mark.parametrize("stack", ["unit"], indirect=True)
TOPIC = "upstream.numbers"


def event(i: int) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"e{i}".encode()),
        ("ce_source", b"/test"),
        ("ce_type", b"number"),
        ("content-type", b"application/json"),
    ]


async def add_trigger(resources: Resources, **spec: Any) -> None:
    """Trigger ``numbers`` on ``TOPIC``, starting workflow ``echo``."""
    async with resources.sessions() as session, session.begin():
        base = {"name": "numbers", "topics": [TOPIC], "workflow": "echo", "enabled": True}
        session.add(TriggerRecord(tenant_id="default", name="numbers", version=1, spec=base | spec))


async def runs(resources: Resources) -> list[RunRecord]:
    async with resources.sessions() as session:
        return list((await session.scalars(select(RunRecord))).all())


@UNIT
async def test_a_tenant_at_its_limit_pauses_consumption_until_a_run_finishes(
    resources: Resources, unique_id: str
) -> None:
    await add_workflow(resources)
    await add_trigger(resources, inputs={"n": "${{ data.n }}"})
    settings = TriggerSettings(
        metrics_port=0,
        group=f"{unique_id}-trigger",
        max_active_runs=1,
        backpressure_poll_s=0.05,
        reload_interval_s=0.1,
    )
    consumer = TriggerConsumer(resources, settings)
    await consumer.start()
    try:
        bus = resources.bus
        assert isinstance(bus, MemoryBus)
        waiting = BACKPRESSURE.labels("default")
        before = waiting._value.get()
        # One key: the two events are handled in order (the second waits for capacity).
        bus.broker.append(TOPIC, b"k", b'{"n": 1}', event(1))
        bus.broker.append(TOPIC, b"k", b'{"n": 2}', event(2))
        bus.broker.append(TOPIC, b"g", b"\xff not json", event(3))

        async def one_waiting() -> bool:
            return waiting._value.get() == before + 1

        await assert_eventually(one_waiting, timeout=15, message="the second event waits")
        assert [r.inputs for r in await runs(resources)] == [{"n": 1}]
        async with resources.sessions() as session, session.begin():
            await session.execute(update(RunRecord).values(status=RunStatus.SUCCEEDED.value))

        async def both() -> bool:
            return sorted(r.inputs["n"] for r in await runs(resources)) == [1, 2]

        await assert_eventually(both, timeout=15, message="the run after capacity freed")
        assert waiting._value.get() == before
        dlq = bus.broker.topics[bus.registry.name(Topic.DLQ)]
        letters = [decode(m).payload for part in dlq for m in part]
        assert len(letters) == 1
        letter = letters[0]
        assert isinstance(letter, DeadLetter)
        assert (letter.original_topic, letter.error_code) == (TOPIC, "undecodable_event")
        assert "not JSON" in letter.reason
    finally:
        await consumer.stop()


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("cadenza_trigger_reloads_total", {"outcome": outcome}) or 0.0


@UNIT
async def test_a_failed_reload_is_counted_and_keeps_the_triggers_in_force(
    resources: Resources, unique_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_trigger(resources)
    settings = TriggerSettings(metrics_port=0, group=f"{unique_id}-trigger", reload_interval_s=0.05)
    consumer = TriggerConsumer(resources, settings)
    await consumer.start()  # the first reload subscribes before start returns
    try:
        assert consumer.topics == (TOPIC,)
        real = consumer_module.load_triggers

        async def away(session: Any) -> Any:
            raise ConnectionRefusedError("the database is away")

        errors, oks = reloads("error"), reloads("ok")
        monkeypatch.setattr(consumer_module, "load_triggers", away)
        await assert_eventually(lambda: reloads("error") >= errors + 2, timeout=10)
        assert consumer.topics == (TOPIC,)  # still consuming with what it read last

        monkeypatch.setattr(consumer_module, "load_triggers", real)
        await assert_eventually(lambda: reloads("ok") > oks, timeout=10)
        assert consumer.topics == (TOPIC,)
    finally:
        await consumer.stop()
