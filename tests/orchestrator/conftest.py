"""Fixtures: ``stack`` runs each test on the unit stack (SQLite + MemoryBus + fakeredis +
local objects) and, where a test allows it, on the integration stack (PostgreSQL schema,
Kafka topics, Redis prefix and MinIO bucket unique to the test, removed afterwards)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cadenza_events import BusSettings, Topic
from cadenza_orchestrator import Orchestrator, OrchestratorSettings
from cadenza_runtime import open_resources
from orchestrator_stack import (
    INTEGRATION,
    STACKS,
    UNIT,
    FakeWorker,
    Stack,
    _cleanup,
    _state_settings,
)
from support.cleanup import drop_schema
from support.stacks import KEEP_PUBLISHED_S


@pytest.fixture(params=STACKS)
async def stack(
    request: pytest.FixtureRequest,
    unique_id: str,
    tmp_path: Path,
    require_services: Callable[..., None],
) -> AsyncIterator[Stack]:
    kind = request.param
    if kind == INTEGRATION:
        require_services("kafka", "postgres", "redis", "minio")
    state = _state_settings(kind, unique_id, tmp_path)
    bus = BusSettings(
        backend="memory" if kind == UNIT else "kafka",
        topic_prefix=f"{unique_id}.",
        partitions=3,
        commit_interval_s=0.05,
        session_timeout_ms=6000,
    )
    # run_events() and friends read what the orchestrator staged from the outbox.
    resources = await open_resources(bus, state, outbox_delete_interval_s=KEEP_PUBLISHED_S)
    # The sweeper loop stays out of the way; tests call sweep_once() when they mean it.
    settings = OrchestratorSettings(sweep_interval_s=3600, sweep_min_age_s=0, metrics_port=0)
    orchestrator = Orchestrator(resources, settings)
    worker = FakeWorker(resources)
    stack = Stack(kind, resources, orchestrator, worker)
    # As a real worker makes no effect before the commit of a task.ready sent before it
    # (cadenza_worker.dispatches), the fake one answers such a task once the orchestrator's
    # batch that sent it is over: what a test reads after a dispatch is committed.
    worker.committed = lambda run_id: run_id not in stack.orchestrator.handlers.turns
    consumer = resources.bus.consumer([Topic.TASK_READY], "fake-worker", worker.handle)
    try:
        await orchestrator.start()
        await consumer.start()
        yield stack
    finally:
        await consumer.stop(grace_s=1)
        await stack.orchestrator.stop()
        await _cleanup(kind, resources, state)
        await resources.close()
        if kind == INTEGRATION:
            await drop_schema(state)
