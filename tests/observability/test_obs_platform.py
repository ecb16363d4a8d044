"""Observability of a real deployment: gateway, orchestrator and worker as separate OS
processes on Kafka, PostgreSQL, Redis and MinIO, exporting spans over OTLP/HTTP to a
receiver in the test and metrics to a real Prometheus (Debian package).

- one trace per run, with parent links intact across every Kafka hop;
- metrics move as a run predicts;
- every PromQL expression of every Grafana panel parses and returns data;
- every alerting rule loads and evaluates, none fires on a healthy deployment, and a real
  dead letter fires CadenzaDeadLetters.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cadenza_cli.infra import ops
from cadenza_cli.infra.paths import infra_dir
from cadenza_cli.infra.prometheus import Prometheus
from cadenza_events import BusSettings
from cadenza_events.kafka import KafkaBus
from cadenza_state import StateSettings
from otlp import OtlpReceiver, ReceivedSpan
from prometheus_client.parser import text_string_to_metric_families
from support import assert_eventually
from support.cleanup import drop_schema
from support.cluster import Cluster, free_port

pytestmark = pytest.mark.e2e

DASHBOARDS = infra_dir() / "grafana" / "dashboards"
ALERT_RULES = infra_dir() / "prometheus" / "alerts.yml"
# Panels that need what this deployment does not run, and so may return no data here:
# RAG panels need the rag-ingest service. (LLM panels get data: the deployment runs an
# agent, replayed from the cassette recorded from the embedded model.)
CASSETTE = Path(__file__).resolve().parents[1] / "worker" / "cassettes" / "agents.json"
# Exactly the agent and prompt recorded in tests/worker/test_worker_agents_replay.py.
CALC_AGENT = {
    "name": "calc",
    "system_prompt": "You are a calculator assistant. Use the calculator tool for arithmetic.",
    "model": "local:smollm2-135m",
    "tools": ["calculator"],
    "max_iterations": 3,
}
AGENT_RUN = {"name": "ask", "tasks": [{"id": "ask", "agent": "calc", "prompt": "What is 17 * 3?"}]}
MAY_BE_EMPTY: dict[tuple[str, str], str] = {
    ("cadenza-kafka", "Handler tries that waited for a backing store, per second"): (
        "only while a store is down (tests/faults drive it)"
    ),
    # Features this test's load does not use; their metrics are asserted where they are
    # driven (tests/worker/test_worker_budgets.py, test_worker_guardrails.py,
    # tests/e2e/test_guardrails_e2e.py, test_replay_e2e.py, test_triggers_e2e.py,
    # tests/cli/test_eval_command.py). Driving each here is owed (closing note).
    ("cadenza-llm", "Spend against budget (USD) by tenant and period"): "no tenant budget set",
    ("cadenza-llm", "Budget refusals and released reservations per minute"): "no budget hit",
    ("cadenza-llm", "Guardrail findings per minute by entity and action"): "no PII policy",
    ("cadenza-llm", "Runs paused by a budget, and resumes, per minute"): (
        "no pausing budget (tests/e2e/test_budget_e2e.py pauses and resumes runs)"
    ),
    ("cadenza-llm", "Evaluations by suite and outcome, last 24 h"): "no `cadenza eval` here",
    ("cadenza-overview", "Held tool calls waiting for a person (guardrails)"): "no held call",
    ("cadenza-overview", "Dead letters (guardrails)"): (
        "not established here (the one garbage record's counter); test_guardrails_e2e.py "
        "records and replays a dead letter"
    ),
    ("cadenza-runs-tasks", "Reruns and forks: tasks reused instead of run, by source"): (
        "no rerun or fork"
    ),
    ("cadenza-triggers", "Trigger consumer lag by upstream topic"): "no trigger service here",
    ("cadenza-triggers", "Upstream events per second by trigger and outcome"): "no trigger",
    ("cadenza-triggers", "Runs started by triggers per second, by tenant"): "no trigger",
    ("cadenza-triggers", "Events waiting for their tenant's run limit (backpressure)"): (
        "no trigger"
    ),
    ("cadenza-triggers", "Schedule ticks per minute by outcome"): "no schedule",
    ("cadenza-triggers", "Dead-lettered upstream events by reason"): "no trigger",
    ("cadenza-triggers", "Dedupe ledger retention: rows deleted per hour, by ledger"): (
        "no trigger service here (tests/triggers/test_ledger_retention.py asserts its metrics)"
    ),
}
"""(dashboard uid, panel title) → why the panel may show nothing after this test's load."""


def tool(task_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "kind": "tool", "tool": name, **fields}


PIPELINE = {
    "name": "observed",
    "tasks": [
        tool("a", "transform", **{"with": {"v": 1}}),
        tool(
            "b",
            "flaky",
            needs=["a"],
            retry={"max_attempts": 3, "initial_backoff_s": 0.01},
            **{"with": {"failures": 1, "key": "${{ run.id }}"}},
        ),
    ],
}
FAILING = {
    "name": "doomed",
    "tasks": [
        tool("x", "flaky", retry={"max_attempts": 1}, **{"with": {"key": "${{ run.id }}"}}),
    ],
}


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def deployment(
    require_services: Any, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    require_services("kafka", "postgres", "redis", "minio")
    namespace = "t" + uuid.uuid4().hex[:12]
    cluster = Cluster(
        namespace=namespace,
        log_dir=tmp_path_factory.mktemp("logs"),
        env_overrides={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "CADENZA_ORCHESTRATOR_METRICS_PORT": str(free_port()),
            # Retention on, passing every second: its panel has data (today's runs are
            # kept: the cutoff is never later than the start of the month).
            "CADENZA_ORCHESTRATOR_RETENTION_DAYS": "30",
            "CADENZA_ORCHESTRATOR_RETENTION_INTERVAL_S": "1",
            "CADENZA_WORKER_METRICS_PORT": str(free_port()),
            "CADENZA_RAG_METRICS_PORT": str(free_port()),
            "CADENZA_LLM_CASSETTE_MODE": "replay",
            "CADENZA_LLM_CASSETTE_PATH": str(CASSETTE),
        },
    )
    try:
        cluster.start_gateway()
        cluster.start_orchestrator()
        cluster.start_worker()
        cluster.start_rag_ingest()
        yield cluster
    finally:
        cluster.stop()
        print(cluster.logs())
        asyncio.run(_clean(namespace))


async def _clean(namespace: str) -> None:
    await drop_schema(StateSettings(database_schema=namespace))
    await KafkaBus(BusSettings(topic_prefix=f"{namespace}.")).delete_topics()


def metrics_urls(cluster: Cluster) -> dict[str, str]:
    env = cluster.env
    return {
        "gateway": f"{cluster.url}/metrics",
        "orchestrator": f"http://127.0.0.1:{env['CADENZA_ORCHESTRATOR_METRICS_PORT']}/metrics",
        "worker": f"http://127.0.0.1:{env['CADENZA_WORKER_METRICS_PORT']}/metrics",
        "rag-ingest": f"http://127.0.0.1:{env['CADENZA_RAG_METRICS_PORT']}/metrics",
    }


@pytest.fixture(scope="module")
def prometheus(
    deployment: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A real Prometheus scraping the deployment every second (installed by apt if needed)."""
    state = tmp_path_factory.mktemp("prometheus")
    config = state / "prometheus.yml"
    jobs = [
        {
            "job_name": f"cadenza-{name}",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [url.split("/")[2]]}],
        }
        for name, url in metrics_urls(deployment).items()
    ]
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERT_RULES)],
                "scrape_configs": jobs,
            }
        )
    )
    server = Prometheus(state, state, config=config, port=free_port())
    errors = ops.up([server], state, ops.Reporter(print))
    assert not errors, errors[0].describe()
    yield server
    pid = server.pid()
    if pid is not None:
        server.stop(pid)


async def run_to_end(api: httpx.AsyncClient, spec: dict[str, Any], **headers: str) -> str:
    resp = await api.post("/v1/runs", json={"spec": spec, "inputs": {}}, headers=headers)
    assert resp.status_code == 201, resp.text
    run_id: str = resp.json()["id"]

    async def done() -> str | None:
        status: str = (await api.get(f"/v1/runs/{run_id}")).json()["status"]
        return status if status in ("succeeded", "failed", "cancelled") else None

    await assert_eventually(done, timeout=60, interval=0.1)
    return run_id


# -- traces ------------------------------------------------------------------------------


async def test_one_trace_spans_gateway_orchestrator_worker_and_tool(
    deployment: Cluster, otlp: OtlpReceiver
) -> None:
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
        await run_to_end(api, PIPELINE, traceparent=f"00-{trace_id}-{caller_span}-01")

    def complete() -> list[ReceivedSpan] | None:
        spans = otlp.trace(trace_id)
        names = {s.name for s in spans}
        wanted = {"tool flaky", "orchestrator.result", "task flaky"}
        done = sum(1 for s in spans if s.name == "orchestrator.result") >= 2
        # Enclosing spans (a consumer batch's) end, and are exported, after their children.
        ids = {s.span_id for s in spans}
        whole = sum(1 for s in spans if s.parent_id not in ids) <= 1
        return spans if wanted <= names and done and whole else None

    spans: list[ReceivedSpan] = await assert_eventually(complete, timeout=30, interval=0.2)
    by_id = {s.span_id: s for s in spans}
    assert {"cadenza-gateway", "cadenza-orchestrator", "cadenza-worker"} <= {
        s.service for s in spans
    }
    # Parent links intact: every span's parent is in the trace, except the HTTP span whose
    # parent is the caller's (ours, not exported).
    orphans = [s for s in spans if s.parent_id not in by_id]
    assert [(s.service, s.name, s.parent_id) for s in orphans] == [
        ("cadenza-gateway", "POST /v1/runs", caller_span)
    ]

    def ancestry(span: ReceivedSpan) -> list[tuple[str, str]]:
        chain = [(span.service, span.name)]
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append((span.service, span.name))
        return chain

    prefix = f"{deployment.namespace}."
    tool_span = next(s for s in spans if s.name == "tool flaky")
    assert tool_span.attributes["cadenza.tool.name"] == "flaky"
    # The tool call, through the worker's task and consumer spans, the orchestrator that
    # dispatched it, the orchestrator that planned the run, up to the HTTP request.
    assert ancestry(tool_span)[:4] == [
        ("cadenza-worker", "tool flaky"),
        ("cadenza-worker", "task flaky"),
        ("cadenza-worker", f"process {prefix}task.ready"),
        ("cadenza-orchestrator", "orchestrator.result"),
    ]
    assert ancestry(tool_span)[-4:] == [
        ("cadenza-orchestrator", "orchestrator.plan"),
        ("cadenza-orchestrator", "orchestrator.batch"),  # the consumer batch it came in
        ("cadenza-orchestrator", f"process {prefix}plan.requested"),
        ("cadenza-gateway", "POST /v1/runs"),
    ]
    # Both tries of the flaky tool (one retry) happened inside the one task span.
    tries = [s for s in spans if s.name == "tool flaky"]
    assert len(tries) == 2
    assert len({s.parent_id for s in tries}) == 1


# -- metrics -----------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], metric: str, labels: dict[str, str]) -> float:
    """Sum of the samples of ``metric`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == metric and wanted <= lbl)


async def test_metrics_move_as_a_run_predicts(deployment: Cluster) -> None:
    urls = metrics_urls(deployment)
    before = {name: scrape(url) for name, url in urls.items()}
    async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
        await run_to_end(api, PIPELINE)

    def moved(service: str, metric: str, delta: float, labels: dict[str, str]) -> bool:
        now = value(scrape(urls[service]), metric, labels)
        return now - value(before[service], metric, labels) == delta

    checks = [
        ("gateway", "cadenza_gateway_requests_total", 1, {"route": "/v1/runs", "status": "201"}),
        ("gateway", "cadenza_gateway_runs_accepted_total", 1, {}),
        ("orchestrator", "cadenza_orchestrator_runs_started_total", 1, {}),
        ("orchestrator", "cadenza_orchestrator_runs_finished_total", 1, {"status": "succeeded"}),
        ("orchestrator", "cadenza_orchestrator_tasks_finished_total", 2, {"status": "succeeded"}),
        (
            "worker",
            "cadenza_worker_dispatch_latency_seconds_count",
            1,
            {"kind": "tool", "name": "transform"},
        ),
        (
            "worker",
            "cadenza_worker_dispatch_latency_seconds_count",
            1,
            {"kind": "tool", "name": "flaky"},
        ),
        (
            "worker",
            "cadenza_worker_tasks_total",
            1,
            {"kind": "tool", "name": "flaky", "status": "succeeded"},
        ),
        ("worker", "cadenza_worker_task_duration_seconds_count", 2, {"kind": "tool"}),
        ("worker", "cadenza_worker_task_retries_total", 1, {"tool": "flaky"}),
        ("worker", "cadenza_worker_tool_calls_total", 1, {"tool": "flaky", "outcome": "error"}),
    ]
    for service, name, delta, labels in checks:
        await assert_eventually(
            lambda s=service, n=name, d=delta, lb=labels: moved(s, n, d, lb),
            timeout=10,
            message=f"{service} {name}{labels} did not move by {delta}",
        )
    worker = scrape(urls["worker"])
    lag = [lbl for (n, lbl) in worker if n == "cadenza_bus_consumer_lag_messages"]
    assert lag, "the worker reports consumer lag"
    assert all(dict(lbl)["topic"].endswith("task.ready") for lbl in lag)
    assert {dict(lbl)["partition"] for lbl in lag} <= {"0", "1", "2"}


# -- dashboards --------------------------------------------------------------------------


def panels() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, expr) for every target of every panel."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((board["uid"], panel["title"], target["expr"]))
    return out


def promql(expr: str) -> str:
    """Grafana's variables, as Grafana would expand them for a short range."""
    return expr.replace("$__rate_interval", "1m").replace("$__range", "1h")


async def query(server: Prometheus, expr: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{server.url}/api/v1/query", params={"query": promql(expr)})
    body: dict[str, Any] = resp.json()
    return body


async def test_every_dashboard_panel_queries_real_data(
    deployment: Cluster, prometheus: Prometheus
) -> None:
    async with httpx.AsyncClient(base_url=deployment.url, timeout=30) as api:
        await run_to_end(api, PIPELINE)
        await run_to_end(api, FAILING)
        assert (await api.post("/v1/agents", json=CALC_AGENT)).status_code == 201
        agent_run = await run_to_end(api, AGENT_RUN)
        run = (await api.get(f"/v1/runs/{agent_run}")).json()
        assert run["status"] == "succeeded", run
        assert (await api.get("/v1/runs/does-not-exist")).status_code == 404
        # Documents for the RAG dashboard: one that indexes, one that fails in ingest.
        assert (await api.post("/v1/collections", json={"name": "obs"})).status_code == 201
        for name, body, kind in (
            ("ok.md", b"# Ok\n\nA document that indexes.", "text/markdown"),
            ("broken.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"),
        ):
            sent = await api.post(
                "/v1/collections/obs/documents", files={"file": (name, body, kind)}
            )
            assert sent.status_code == 202, sent.text
    bus = KafkaBus(BusSettings(topic_prefix=f"{deployment.namespace}.", partitions=3))
    await bus.start()
    try:  # an undecodable task.ready: the worker dead-letters it
        await bus.publisher.publish_raw(
            f"{deployment.namespace}.task.ready", b"garbage", b"not a cloudevent", []
        )
    finally:
        await bus.stop()

    async def scraped_everything() -> bool:
        # The dead letter comes last; rates need two samples of each series after it.
        dlq = await query(prometheus, "count_over_time(cadenza_bus_dead_letters_total[1m]) >= 2")
        failed = await query(
            prometheus, 'cadenza_orchestrator_runs_finished_total{status="failed"}'
        )
        tokens = await query(prometheus, "count_over_time(cadenza_agent_llm_tokens_total[1m]) >= 2")
        docs = await query(prometheus, "count_over_time(cadenza_rag_documents_total[1m]) >= 2")
        up = await query(prometheus, "min(up)")
        return bool(
            len(docs["data"]["result"]) >= 2  # indexed and failed
            and dlq["data"]["result"]
            and failed["data"]["result"]
            and tokens["data"]["result"]
            and up["data"]["result"][0]["value"][1] == "1"
        )

    await assert_eventually(scraped_everything, timeout=30, interval=0.5)

    all_panels = panels()
    assert len(all_panels) >= 30
    empty: list[tuple[str, str]] = []
    for uid, title, expr in all_panels:
        answer = await query(prometheus, expr)
        assert answer["status"] == "success", f"{uid} / {title}: {expr}: {answer}"
        if not answer["data"]["result"]:
            empty.append((uid, title))
    unexpected = [p for p in empty if p not in MAY_BE_EMPTY]
    assert not unexpected, f"panels without data: {unexpected}"
    print("panels without data here:", {p: MAY_BE_EMPTY[p] for p in empty})


# -- alerts ----------------------------------------------------------------------------


async def alert_rules(server: Prometheus) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{server.url}/api/v1/rules", params={"type": "alert"})
    return [rule for group in resp.json()["data"]["groups"] for rule in group["rules"]]


async def test_every_alert_loads_and_a_real_dead_letter_fires_one(
    deployment: Cluster, prometheus: Prometheus
) -> None:
    expected = {
        rule["alert"]
        for group in yaml.safe_load(ALERT_RULES.read_text())["groups"]
        for rule in group["rules"]
    }

    async def all_evaluated() -> bool:
        rules = await alert_rules(prometheus)
        return {r["name"] for r in rules} == expected and all(r["health"] == "ok" for r in rules)

    await assert_eventually(all_evaluated, timeout=30, message="the rules never all evaluated")
    critical = [
        r["name"]
        for r in await alert_rules(prometheus)
        if r["labels"].get("severity") == "critical" and r["state"] != "inactive"
    ]
    assert critical == [], f"a healthy deployment pages: {critical}"

    # A topic no other test of this module dead-letters on: the alert is this record's.
    topic = f"{deployment.namespace}.task.result"

    async def dead_letters_fire() -> bool:
        for rule in await alert_rules(prometheus):
            if rule["name"] == "CadenzaDeadLetters":
                return any(
                    a["state"] == "firing" and a["labels"].get("topic") == topic
                    for a in rule["alerts"]
                )
        return False

    assert not await dead_letters_fire()
    bus = KafkaBus(BusSettings(topic_prefix=f"{deployment.namespace}.", partitions=3))
    await bus.start()
    try:  # the orchestrator dead-letters an undecodable task.result
        await bus.publisher.publish_raw(topic, b"alert", b"not a cloudevent", [])
    finally:
        await bus.stop()
    await assert_eventually(dead_letters_fire, timeout=60, message="CadenzaDeadLetters never fired")
