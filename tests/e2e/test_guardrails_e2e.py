"""Guardrails with every service its own OS process on real Kafka/PostgreSQL/Redis/MinIO
(docs/guardrails.md): a risky tool call held for approval across a restart of every
service, then made exactly once; a rejected call and an expired one; an effect left in
doubt by a kill -9 between sending and recording; a dead letter replayed to complete a
stuck run.

The agent's model is :class:`ScriptedLLM` (an OpenAI-compatible endpoint in this process);
the system it acts on is :class:`Target`, which counts every request it receives.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cadenza_events import (
    BusSettings,
    DeadLetter,
    Envelope,
    TaskResult,
    Topic,
    TopicRegistry,
    encode,
)
from cadenza_events.kafka import KafkaBus
from cadenza_state import AuditLogEntry, StateSettings, ToolCallRecord, create_engine
from guardrail_servers import ScriptedLLM, Target
from sqlalchemy import select
from support import assert_eventually
from support.cleanup import drop_schema
from support.cluster import Cluster

FINISHED = {"succeeded", "failed", "cancelled"}

# Several process starts each, on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(360)


def agent(**extra: Any) -> dict[str, Any]:
    return {
        "name": "ops",
        "system_prompt": "You manage orders through their HTTP API.",
        "model": "fake:scripted",
        "tools": ["http_request"],
        "max_iterations": 3,
        **extra,
    }


AGENT_RUN = {
    "spec": {
        "name": "cleanup",
        "tasks": [{"id": "act", "agent": "ops", "prompt": "Delete order 7."}],
        "output": "${{ tasks.act.output }}",
    }
}


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target(hang_path="/payments")
    yield server
    server.close()


@pytest.fixture
def llm(target: Target) -> Iterator[ScriptedLLM]:
    server = ScriptedLLM(
        "http_request",
        {"url": f"{target.url}/orders/7", "method": "DELETE"},
        said="Order 7 is a duplicate; deleting it.",
    )
    yield server
    server.close()


@pytest.fixture
async def deployment(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None], llm: ScriptedLLM
) -> AsyncIterator[Cluster]:
    require_services("kafka", "postgres", "redis", "minio")
    cluster = Cluster(
        namespace=unique_id,
        log_dir=tmp_path,
        env_overrides={
            "CADENZA_LLM_PROVIDERS__FAKE__BASE_URL": f"{llm.url}/v1",
            "CADENZA_LLM_PROVIDERS__FAKE__MAX_ATTEMPTS": "1",
            "CADENZA_WORKER_HTTP_ALLOW_PRIVATE": "true",
        },
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        print(cluster.logs())
        await drop_schema(StateSettings(database_schema=unique_id))
        await KafkaBus(BusSettings(topic_prefix=f"{unique_id}.")).delete_topics()


def start_all(
    cluster: Cluster,
    worker_env: dict[str, str] | None = None,
    orchestrator_env: dict[str, str] | None = None,
) -> None:
    cluster.start_gateway()
    cluster.start_orchestrator(orchestrator_env)
    cluster.start_worker(worker_env)


async def finished_run(api: httpx.AsyncClient, run_id: str, timeout: float = 90) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        run: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
        return run if run["status"] in FINISHED else None

    result: dict[str, Any] = await assert_eventually(done, timeout=timeout, interval=0.3)
    return result


async def pending_hold(api: httpx.AsyncClient, run_id: str, kind: str) -> dict[str, Any]:
    async def held() -> dict[str, Any] | None:
        resp = await api.get("/v1/approvals", params={"run_id": run_id, "status": "pending"})
        items = [i for i in resp.json()["items"] if i["kind"] == kind]
        return items[0] if items else None

    found: dict[str, Any] = await assert_eventually(held, timeout=90, interval=0.3)
    return found


def task_of(run: dict[str, Any], node: str) -> dict[str, Any]:
    return next(t for t in run["tasks"] if t["node_id"] == node)


async def reject_then_expire(api: httpx.AsyncClient, target: Target, llm: ScriptedLLM) -> None:
    """The same deployment, two more runs: a rejected call, and one nobody answers."""
    deletes = target.count("DELETE /orders/7")
    rejected_run = (await api.post("/v1/runs", json=AGENT_RUN)).json()["id"]
    hold = await pending_hold(api, rejected_run, "approval")
    resp = await api.post(
        f"/v1/approvals/{hold['id']}/reject", json={"comment": "order 7 is not a duplicate"}
    )
    assert resp.status_code == 200, resp.text
    run = await finished_run(api, rejected_run)
    assert run["status"] == "succeeded", run
    # The rejection reached the model as the call's observation; nothing was sent.
    observation = llm.tool_observations()[-1]
    assert "rejected by anonymous" in observation
    assert "order 7 is not a duplicate" in observation
    assert target.count("DELETE /orders/7") == deletes

    # A policy that fails the task when nobody answers within a second.
    strict = agent(approval={"timeout_s": 1, "on_timeout": "fail"})
    assert (await api.post("/v1/agents", json=strict)).status_code == 201
    expired_run = (await api.post("/v1/runs", json=AGENT_RUN)).json()["id"]
    run = await finished_run(api, expired_run)
    assert run["status"] == "failed", run
    assert task_of(run, "act")["error"]["code"] == "approval_timeout"
    expired = (await api.get("/v1/approvals", params={"run_id": expired_run})).json()["items"]
    assert [(a["status"], a["decided_by"]) for a in expired] == [("expired", "system:timeout")]
    assert target.count("DELETE /orders/7") == deletes


async def test_approval_held_across_restarts_made_once_then_rejected_and_expired(
    deployment: Cluster, target: Target, llm: ScriptedLLM
) -> None:
    start_all(deployment)
    engine = create_engine(StateSettings(database_schema=deployment.namespace))
    try:
        async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
            assert (await api.post("/v1/agents", json=agent())).status_code == 201
            resp = await api.post("/v1/runs", json=AGENT_RUN)
            assert resp.status_code == 201, resp.text
            run_id = resp.json()["id"]

            hold = await pending_hold(api, run_id, "approval")
            # The exact call, the agent's reason and the rule are shown; nothing was sent.
            assert hold["tool"] == "http_request"
            assert hold["arguments"] == {"url": f"{target.url}/orders/7", "method": "DELETE"}
            assert hold["reason"] == "Order 7 is a duplicate; deleting it."
            assert "not allowlisted" in hold["rule"]
            run = (await api.get(f"/v1/runs/{run_id}")).json()
            assert run["status"] == "running"
            assert task_of(run, "act")["status"] == "awaiting_approval"
            assert target.count("DELETE /orders/7") == 0

        # Every service goes away while the call waits, and comes back.
        deployment.stop()
        start_all(deployment)

        async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
            again = (await api.get(f"/v1/approvals/{hold['id']}")).json()
            assert again["status"] == "pending"
            assert target.count("DELETE /orders/7") == 0
            resp = await api.post(
                f"/v1/approvals/{hold['id']}/approve", json={"comment": "confirmed duplicate"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "approved"
            assert resp.json()["decided_by"] == "anonymous"
            # A second answer is refused: one decision per held call.
            late = await api.post(f"/v1/approvals/{hold['id']}/reject", json={})
            assert late.status_code == 409
            assert late.json()["type"].endswith("approval-answered")

            run = await finished_run(api, run_id)
        assert run["status"] == "succeeded", run
        assert target.count("DELETE /orders/7") == 1  # made exactly once, after the approval
        assert str(run["output"]).startswith("observed: ")
        assert '"ok": true' in llm.tool_observations()[-1].replace('"ok":true', '"ok": true')
        # Resumed at the call: the model answered turn 0 once (before the restart) and turn 1.
        assert len(llm.requests) == 2
        async with engine.connect() as conn:
            calls = (
                await conn.execute(
                    select(ToolCallRecord.attempt, ToolCallRecord.status).where(
                        ToolCallRecord.run_id == run_id
                    )
                )
            ).all()
            audit = (
                await conn.execute(
                    select(AuditLogEntry.action, AuditLogEntry.actor).where(
                        AuditLogEntry.subject == f"approval:{hold['id']}"
                    )
                )
            ).all()
        assert sorted(calls) == [(1, "held"), (2, "ok")]
        assert audit == [("approval.approved", "anonymous")]
        async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
            await reject_then_expire(api, target, llm)
    finally:
        await engine.dispose()


async def test_in_doubt_after_kill_9_then_a_dead_letter_replayed(
    deployment: Cluster, target: Target
) -> None:
    # A workflow tool task POSTs a payment; the target is allowlisted (no approval needed)
    # and never answers, so the worker is killed between sending and recording. (A task
    # never started is not re-dispatched soon: the dead-letter part needs its run stuck.)
    worker_env = {"CADENZA_WORKER_APPROVAL_ALLOW_HOSTS": '["127.0.0.1"]'}
    start_all(deployment, worker_env, {"CADENZA_ORCHESTRATOR_REQUEUE_AFTER_S": "600"})
    spec = {
        "name": "pay",
        "tasks": [
            {
                "id": "charge",
                "tool": "http_request",
                "with": {"url": f"{target.url}/payments", "method": "POST", "json": {"cents": 500}},
                "timeout_s": 120,
            }
        ],
        "output": "${{ tasks.charge.output }}",
    }
    async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
        resp = await api.post("/v1/runs", json={"spec": spec})
        assert resp.status_code == 201, resp.text
        run_id = resp.json()["id"]
        await assert_eventually(lambda: target.count("POST /payments") == 1, timeout=60)
        worker = next(p for p in deployment.processes if p.name == "worker")
        worker.kill()
        deployment.start_worker(worker_env)

        hold = await pending_hold(api, run_id, "in_doubt")
        assert hold["tool"] == "http_request"
        assert hold["arguments"]["method"] == "POST"
        run = (await api.get(f"/v1/runs/{run_id}")).json()
        assert task_of(run, "charge")["status"] == "in_doubt"
        assert target.count("POST /payments") == 1  # not retried blindly

        wrong = await api.post(f"/v1/approvals/{hold['id']}/approve", json={})
        assert wrong.status_code == 409  # an effect in doubt is resolved, not approved
        receipt = {"status": 201, "json": {"payment": "p-1", "checked": "by hand"}}
        resp = await api.post(
            f"/v1/approvals/{hold['id']}/resolve",
            json={"outcome": "done", "output": receipt, "comment": "the PSP shows it"},
        )
        assert resp.status_code == 200, resp.text
        run = await finished_run(api, run_id)
    assert run["status"] == "succeeded", run
    assert run["output"] == receipt
    assert target.count("POST /payments") == 1

    # The same deployment without workers, for a run that gets stuck.
    for process in deployment.processes:
        if process.name == "worker":
            process.stop()
    await replaying_a_dead_lettered_result_completes_the_stuck_run(deployment)


async def replaying_a_dead_lettered_result_completes_the_stuck_run(deployment: Cluster) -> None:
    """No worker: the task stays dispatched until its result arrives — here, from the
    dead-letter inbox, where a consumer that failed on it had put it."""
    spec = {
        "name": "one",
        "tasks": [{"id": "only", "tool": "noop"}],
        "output": "${{ tasks.only.output }}",
    }
    registry = TopicRegistry(prefix=f"{deployment.namespace}.", partitions=3)
    bus = KafkaBus(BusSettings(topic_prefix=f"{deployment.namespace}.", partitions=3))
    await bus.start()
    try:
        async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
            run_id = (await api.post("/v1/runs", json={"spec": spec})).json()["id"]

            async def dispatched() -> dict[str, Any] | None:
                run: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
                task = task_of(run, "only") if run.get("tasks") else None
                return task if task and task["status"] == "ready" else None

            task = await assert_eventually(dispatched, timeout=60, interval=0.3)
            result = TaskResult(
                run_id=run_id,
                task_id=task["id"],
                attempt=1,
                status="succeeded",
                output={"replayed": True},
                worker_id="worker-that-never-was",
            )
            env = Envelope(
                result, source="/tests", tenant_id="default", plan_id=run_id, task_id=task["id"]
            )
            key, value, headers = encode(env, registry.key_for(Topic.TASK_RESULT, env))
            letter = DeadLetter(
                original_topic=registry.name(Topic.TASK_RESULT),
                partition=0,
                offset=12345,
                key=key.decode() if key else None,
                headers={k: v.decode() for k, v in headers},
                value_b64=base64.b64encode(value).decode(),
                reason="OperationalError: a bug since fixed",
                error_code="OperationalError",
                attempts=5,
                consumer_group=f"{deployment.namespace}.cadenza-orchestrator",
            )
            await bus.publisher.publish(
                Topic.DLQ,
                Envelope(
                    letter,
                    source="/tests",
                    tenant_id="default",
                    plan_id=run_id,
                    task_id=task["id"],
                    subject="task.result/0/12345",
                ),
            )

            async def listed() -> dict[str, Any] | None:
                items = (await api.get("/v1/dead-letters", params={"run_id": run_id})).json()
                return items["items"][0] if items.get("items") else None

            dead = await assert_eventually(listed, timeout=60, interval=0.3)
            assert dead["status"] == "pending"
            assert dead["task_id"] == task["id"]
            assert dead["event_type"] == TaskResult.EVENT_TYPE
            assert dead["reason"] == "OperationalError: a bug since fixed"
            assert '"replayed":true' in dead["first_bytes"]
            assert (await api.get(f"/v1/runs/{run_id}")).json()["status"] == "running"

            resp = await api.post(f"/v1/dead-letters/{dead['id']}/replay")
            assert resp.status_code == 200, resp.text
            assert resp.json()["status"] == "replayed"
            assert (await api.post(f"/v1/dead-letters/{dead['id']}/replay")).status_code == 409
            run = await finished_run(api, run_id)
        assert run["status"] == "succeeded", run
        assert run["output"] == {"replayed": True}
    finally:
        await bus.stop()
