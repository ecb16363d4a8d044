"""kill -9 a worker in the middle of an agent loop: the next worker resumes from the
LangGraph checkpoint (PostgreSQL) and repeats neither the completed LLM turn nor the
completed tool call.

Services are separate OS processes on real Kafka/PostgreSQL/Redis/MinIO; the LLM is the
replay provider answering from the cassette recorded from the embedded model
(tests/worker/cassettes/agents.json), slowed to 2 s per answer so the worker can be killed
while it waits for turn 1.
"""

from __future__ import annotations

import httpx
import pytest
from cadenza_state import LLMCallRecord, StateSettings, ToolCallRecord, create_engine
from cadenza_state.checkpoints import thread_id
from cadenza_worker.agents.checkpoints import open_checkpointer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from support import assert_eventually
from support.calc_agent import ASK, CALC_AGENT, replay_env
from support.cluster import Cluster


@pytest.fixture
def cluster_env() -> dict[str, str]:
    """The conftest's `cluster` (gateway, orchestrator, one worker), its LLM answering from
    the cassette."""
    return replay_env(delay_s=2)


def worker_metric(cluster: Cluster, name: str, **labels: str) -> float:
    port = cluster.env_overrides["CADENZA_WORKER_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_kill_9_mid_agent_loop_resumes_from_the_checkpoint(cluster: Cluster) -> None:
    engine = create_engine(StateSettings(database_schema=cluster.namespace))
    try:
        async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as api:
            assert (await api.post("/v1/agents", json=CALC_AGENT)).status_code == 201
            resp = await api.post("/v1/runs", json={"spec": ASK, "inputs": {}})
            assert resp.status_code == 201, resp.text
            run_id = resp.json()["id"]

            async def first_tool_call_done() -> str | None:
                async with engine.connect() as conn:
                    query = select(ToolCallRecord.task_id).where(
                        ToolCallRecord.run_id == run_id, ToolCallRecord.call_index == 0
                    )
                    return (await conn.execute(query)).scalar_one_or_none()

            # Turn 0 answered and its tool call made, then the tools step checkpointed: the
            # worker now waits for turn 1. (Killed between the call's row and that
            # checkpoint, the next attempt would make this call, which has no side effects,
            # again: allowed, but not what this test is about.)
            task_id = await assert_eventually(first_tool_call_done, timeout=60, interval=0.1)
            async with open_checkpointer(StateSettings(database_schema=cluster.namespace)) as saver:

                async def tools_step_checkpointed() -> bool:
                    saved = await saver.aget_tuple(
                        {"configurable": {"thread_id": thread_id(task_id, 1), "checkpoint_ns": ""}}
                    )
                    made = saved.checkpoint["channel_values"].get("tool_calls_made") if saved else 0
                    return bool(made)

                await assert_eventually(tools_step_checkpointed, timeout=30, interval=0.05)
            worker = next(p for p in cluster.processes if p.name == "worker")
            worker.kill()
            cluster.start_worker()

            async def finished() -> dict[str, object] | None:
                run: dict[str, object] = (await api.get(f"/v1/runs/{run_id}")).json()
                return run if run["status"] in {"succeeded", "failed", "cancelled"} else None

            run = await assert_eventually(finished, timeout=120, interval=0.2)
        assert run["status"] == "succeeded", run
        async with engine.connect() as conn:
            turns = (
                await conn.execute(
                    select(LLMCallRecord.turn, LLMCallRecord.status).where(
                        LLMCallRecord.run_id == run_id
                    )
                )
            ).all()
            tool_calls = (
                await conn.execute(
                    select(ToolCallRecord.call_index).where(ToolCallRecord.run_id == run_id)
                )
            ).scalars()
            indexes = sorted(tool_calls)
    finally:
        await engine.dispose()

    # Every turn and tool call once, across attempts (a restart from scratch would record
    # turn 0 again under the new attempt).
    assert sorted(t for t, _ in turns) == [0, 1, 2]
    assert indexes == [0, 1]
    # The new worker resumed, asked only turns 1 and 2, and made only the second tool call.
    assert worker_metric(cluster, "cadenza_agent_resumes_total", agent="calc") == 1
    assert worker_metric(cluster, "cadenza_agent_turns_total", agent="calc") == 2
    assert worker_metric(cluster, "cadenza_agent_tool_calls_total", agent="calc") == 1
