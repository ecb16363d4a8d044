"""Helpers of the worker tests: the `Stack` harness (drive the worker without an
orchestrator) and a tiny HTTP server on 127.0.0.1. Fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cadenza_events import (
    BusSettings,
    DeadLetter,
    Envelope,
    RunEvent,
    RunEventBatch,
    TaskReady,
    TaskResult,
    Topic,
    unbatch,
)
from cadenza_runtime import Resources, keys
from cadenza_state import (
    HotState,
    ObjectStore,
    RunRecord,
    S3ObjectStore,
    SecretsSettings,
    StateSettings,
    TaskRecord,
    utcnow,
)
from cadenza_worker import ExecutorRegistry, ToolContext, ToolRegistry, Worker, WorkerSettings
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import assert_eventually
from support.cleanup import drop_bucket

BOTH_STACKS = pytest.mark.parametrize(
    "stack",
    [
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("real", marks=pytest.mark.integration),
    ],
    indirect=True,
)


def tool_context(
    hot: HotState,
    objects: ObjectStore,
    sessions: async_sessionmaker[AsyncSession] | None = None,
    *,
    tenant: str = "acme",
    node: str = "n",
) -> ToolContext:
    """The context a tool is called with, for calling tools directly."""
    return ToolContext(
        tenant_id=tenant,
        run_id="run-1",
        task_id="task-1",
        node_id=node,
        attempt=1,
        try_number=1,
        hot=hot,
        objects=objects,
        sessions=sessions,
    )


def retry_task(**overrides: Any) -> TaskReady:
    """A task.ready for the retry loop on its own: three tries, millisecond backoffs."""
    values: dict[str, Any] = {
        "run_id": "r",
        "task_id": "t",
        "node_id": "n",
        "name": "x",
        "max_attempts": 3,
        "initial_backoff_s": 0.001,
        "max_backoff_s": 0.002,
        "timeout_s": 5,
    }
    values.update(overrides)
    return TaskReady(**values)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Stack:
    kind: str
    uid: str
    resources: Resources
    results: list[Envelope[Any]] = field(default_factory=list)
    events: list[Envelope[Any]] = field(default_factory=list)
    dead: list[Envelope[Any]] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    tenants: dict[str, str] = field(default_factory=dict)  # run id -> tenant (default acme)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- workers -----------------------------------------------------------------------
    def settings(self, **overrides: Any) -> WorkerSettings:
        values: dict[str, Any] = {
            "worker_id": f"w{next(self._seq)}-{self.uid}",
            "consumer_group": f"{self.uid}-workers",
            "lease_ttl_s": 0.9,  # heartbeat (and cancel watch) every 0.3 s
            "metrics_port": 0,
            "shutdown_grace_s": 1.0,
        }
        values.update(overrides)
        return WorkerSettings(**values)

    async def start_worker(
        self,
        *,
        tools: ToolRegistry | None = None,
        executors: ExecutorRegistry | None = None,
        llm: Any = None,
        secrets: SecretsSettings | None = None,
        **overrides: Any,
    ) -> Worker:
        worker = Worker(
            self.resources,
            self.settings(**overrides),
            tools=tools,
            executors=executors,
            llm=llm,
            secrets=secrets,
        )
        await worker.start()
        self.workers.append(worker)
        return worker

    # -- tasks -------------------------------------------------------------------------
    async def add_task(
        self,
        name: str = "transform",
        params: dict[str, Any] | None = None,
        *,
        kind: str = "tool",
        run_id: str | None = None,
        attempt: int = 1,
        status: str = "ready",
        max_attempts: int = 3,
        timeout_s: float = 30.0,
        initial_backoff_s: float = 0.01,
        max_backoff_s: float = 0.05,
        params_ref: str | None = None,
        tenant_id: str = "acme",
    ) -> TaskReady:
        """Insert the run (if new) and a task row exactly as the orchestrator would."""
        run_id = run_id or str(uuid.uuid4())
        tenant_id = self.tenants.setdefault(run_id, tenant_id)
        node_id = f"n{next(self._seq)}"
        task_id = f"{run_id}:{node_id}"
        now = utcnow()
        async with self.resources.sessions() as session, session.begin():
            if await session.get(RunRecord, run_id) is None:
                session.add(
                    RunRecord(
                        id=run_id,
                        tenant_id=tenant_id,
                        workflow_name="test",
                        spec={},
                        inputs={},
                        status="running",
                    )
                )
                await session.flush()
            session.add(
                TaskRecord(
                    id=task_id,
                    run_id=run_id,
                    node_id=node_id,
                    status=status,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    input=params,
                    ready_at=now,
                )
            )
        return TaskReady(
            run_id=run_id,
            task_id=task_id,
            node_id=node_id,
            attempt=attempt,
            kind=kind,
            name=name,
            params=None if params_ref else (params or {}),
            params_ref=params_ref,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            initial_backoff_s=initial_backoff_s,
            max_backoff_s=max_backoff_s,
            ready_at=now,
        )

    def envelope(self, task: TaskReady) -> Envelope[TaskReady]:
        return Envelope(
            payload=task,
            source="/tests/orchestrator",
            tenant_id=self.tenants.get(task.run_id, "acme"),
            plan_id=task.run_id,
            task_id=task.task_id,
            attempt=task.attempt,
        )

    async def dispatch(self, task: TaskReady) -> None:
        await self.resources.publisher.publish(Topic.TASK_READY, self.envelope(task))

    async def redispatch(self, task: TaskReady) -> TaskReady:
        """What the sweeper does when a worker vanished: attempt + 1, status ready."""
        nxt = task.model_copy(update={"attempt": task.attempt + 1})
        async with self.resources.sessions() as session, session.begin():
            row = await session.get(TaskRecord, task.task_id)
            assert row is not None
            row.attempt, row.status = nxt.attempt, "ready"
        await self.dispatch(nxt)
        return nxt

    async def row(self, task_id: str) -> TaskRecord:
        async with self.resources.sessions() as session:
            row = await session.get(TaskRecord, task_id)
            assert row is not None
            return row

    async def flaky_calls(self, key: str) -> int:
        return await self.resources.hot.get_counter(f"tool:flaky:{key}")

    async def lease_owner(self, task_id: str) -> str | None:
        return await self.resources.hot.lease_owner(keys.task_lease(task_id))

    async def cancel_run(self, run_id: str) -> None:
        hot = self.resources.hot
        await hot.redis.set(hot.key(keys.run_cancelled(run_id)), "1", ex=600)

    # -- results -----------------------------------------------------------------------
    def results_for(self, task_id: str) -> list[TaskResult]:
        return [e.payload for e in self.results if e.payload.task_id == task_id]

    async def result(self, task: TaskReady, timeout: float = 15.0) -> TaskResult:
        async def one() -> TaskResult | None:
            found = [r for r in self.results_for(task.task_id) if r.attempt == task.attempt]
            return found[0] if found else None

        result: TaskResult = await assert_eventually(
            one, timeout=timeout, message=f"no task.result for {task.task_id}"
        )
        return result

    def event_kinds(self, task_id: str) -> list[str]:
        return [e.payload.kind for e in self.events if e.payload.task_id == task_id]

    async def _collect(self, env: Envelope[Any]) -> None:
        if isinstance(env.payload, TaskResult):
            self.results.append(env)
            # The attempt's events the worker had not sent yet ride in its result (the
            # orchestrator puts them on the timeline); this stack has no orchestrator.
            self.events.extend(
                replace(env, payload=event, id=f"{env.id}.{n}", task_id=event.task_id)
                for n, event in enumerate(env.payload.events)
            )
        elif isinstance(env.payload, (RunEvent, RunEventBatch)):
            self.events.extend(unbatch(env))
        elif isinstance(env.payload, DeadLetter):
            self.dead.append(env)


def real_settings(uid: str) -> tuple[BusSettings, StateSettings]:
    bus = BusSettings(
        backend="kafka",
        topic_prefix=f"{uid}.",
        partitions=3,
        commit_interval_s=0.05,
        session_timeout_ms=6000,
    )
    state = StateSettings(
        database_schema=uid,
        redis_backend="redis",
        redis_key_prefix=f"test:{uid}:",
        object_store="s3",
        s3_bucket=uid,
    )
    return bus, state


def memory_settings(uid: str, tmp_path: Path) -> tuple[BusSettings, StateSettings]:
    bus = BusSettings(
        backend="memory", topic_prefix=f"{uid}.", partitions=3, commit_interval_s=0.02
    )
    state = StateSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}",
        redis_backend="memory",
        redis_key_prefix=f"test:{uid}:",
        object_store="local",
        object_store_dir=tmp_path / "objects",
    )
    return bus, state


async def cleanup_real(resources: Resources, state: StateSettings) -> None:
    hot = resources.hot
    doomed = [k async for k in hot.redis.scan_iter(match=f"{hot.prefix}*", count=10_000)]
    if doomed:
        await hot.redis.delete(*doomed)
    objects = resources.objects
    assert isinstance(objects, S3ObjectStore)

    await asyncio.to_thread(drop_bucket, objects)


# -- a tiny HTTP server on 127.0.0.1 --------------------------------------------------------


@dataclass
class HttpServer:
    port: int
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


async def http_handler(
    server: HttpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        request_line = (await reader.readline()).decode()
        if not request_line:
            return
        method, target, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, value = line.decode().split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        server.hits[target] = server.hits.get(target, 0) + 1
        status, ctype, payload = 200, "application/json", b""
        if target.startswith("/status/"):
            status = int(target.rsplit("/", 1)[1])
            payload = b'{"error": "as you asked"}'
        elif target == "/text":
            ctype, payload = "text/plain; charset=utf-8", "héllo".encode()
        elif target == "/big":
            ctype, payload = "application/octet-stream", b"x" * 300_000
        elif target == "/slow":
            await asyncio.sleep(10)
        elif target.startswith("/flaky"):  # 503 twice, then 200
            if server.hits[target] <= 2:
                status = 503
            payload = json.dumps({"hit": server.hits[target]}).encode()
        else:
            payload = json.dumps(
                {
                    "method": method,
                    "path": target,
                    "host": headers.get("host"),
                    "header": headers.get("x-test"),
                    "body": body.decode(),
                }
            ).encode()
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
