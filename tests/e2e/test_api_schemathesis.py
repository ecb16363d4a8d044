"""schemathesis against the gateway on the real stack, with an API key holding every scope.

1. Stateless: every operation of the OpenAPI document, generated valid and invalid
   requests (examples, coverage and fuzzing phases).
2. Stateful: chains of requests that follow the document's links (create a workflow, then
   read its versions; start a run, then read, cancel, resume, rerun, fork and diff it, read
   its timeline and calls; create a trigger, disable and delete it…), so operations on
   resources that exist are exercised too. A workflow is registered first and the phase's
   runs start it (`STATEFUL_OVERRIDES`): no generated name or spec would ever make a run.

Both hold the gateway to: zero server errors, zero answers the document does not describe
(status codes, content types, headers, bodies), no operation that ignores a missing or bad
credential, and schema-valid requests accepted (`positive_data_acceptance`) except where
tests/e2e/schemathesis.toml lists, with why, what a JSON Schema cannot say.

The gateway, rag-ingest (the search API), an orchestrator and a worker run as their own
processes on PostgreSQL, Redis, Kafka and MinIO, in a fresh schema/topic prefix. Examples
are bounded (`EXAMPLES` per operation, `SCENARIOS` chains) so the run fits the CI budget
(about a minute and a half on 2 busy cores). The run events stream (SSE) is left out: it stays open while its run lives
(tests/gateway cover it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cadenza_events import BusSettings
from cadenza_events.kafka import KafkaBus
from cadenza_gateway.auth import ALL_SCOPES, create_key
from cadenza_state import StateSettings, create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from support.cleanup import drop_schema
from support.cluster import Cluster

pytestmark = pytest.mark.timeout(600)

EXAMPLES = 3
SEED = 20261204
SCENARIOS = 150  # stateful chains, each at most 6 steps (schemathesis' default)
CONFIG = Path(__file__).with_name("schemathesis.toml")
STATEFUL_HOOKS = Path(__file__).with_name("schemathesis_stateful_hooks.py")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "positive_data_acceptance",
)


@pytest.fixture
def deployment(
    unique_id: str, tmp_path: Path, require_services: Callable[..., None]
) -> Iterator[Cluster]:
    require_services("kafka", "postgres", "redis", "minio")
    cluster = Cluster(
        namespace=unique_id,
        log_dir=tmp_path,
        env_overrides={
            "CADENZA_GATEWAY_AUTH_ANONYMOUS_ACCESS": "false",  # authentication configured
            "CADENZA_SECRETS_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        },
    )
    try:
        cluster.start_gateway()  # migrates the fresh schema
        cluster.start_rag_ingest()
        # Runs the stateful phase starts are planned and run (tasks, calls, a finished run).
        cluster.start_orchestrator()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
        print(cluster.logs())

        async def cleanup() -> None:
            await drop_schema(StateSettings(database_schema=unique_id))
            await KafkaBus(BusSettings(topic_prefix=f"{unique_id}.")).delete_topics()

        asyncio.run(cleanup())


async def _admin_key(namespace: str) -> str:
    engine = create_engine(StateSettings(database_schema=namespace))
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            issued = await create_key(
                session=session,
                tenant_id="fuzz",
                name="schemathesis",
                scopes=list(ALL_SCOPES),
                created_by="test",
            )
        return issued.token
    finally:
        await engine.dispose()


def _schemathesis(
    deployment: Cluster,
    key: str,
    report: Path,
    phases: str,
    examples: int,
    config: Path = CONFIG,
    hooks: Path | None = None,
    seed: int = SEED,
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", f"{deployment.url}/openapi.json",
        "--header", f"Authorization: Bearer {key}",
        "--checks", ",".join(CHECKS),
        "--phases", phases,
        "--max-examples", str(examples),
        # One worker: with two, CPython 3.11's ast.parse (hypothesis describes filters with
        # it) races across threads: "SystemError: AST constructor recursion depth mismatch".
        "--workers", "1",
        "--seed", str(seed),  # reproducible in CI; change SEED locally to explore
        "--no-shrink",
        "--request-timeout", "20",
        "--exclude-path-regex", r"/events$",
        "--output-sanitize", "true",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)} if hooks else None
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=540, check=False, env=env
    )
    print(done.stdout[-3_000:])  # the summary: operations tested, phases, time
    return done


def test_the_gateway_keeps_its_openapi_promises_under_generated_requests(
    deployment: Cluster, tmp_path: Path
) -> None:
    key = asyncio.run(_admin_key(deployment.namespace))
    done = _schemathesis(
        deployment, key, tmp_path / "stateless.ndjson", "examples,coverage,fuzzing", EXAMPLES
    )
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    assert "Tested: " in done.stdout

    _seed(deployment, key)
    # Hypothesis ends a stateful search on its own, after 34 to 155 scenarios with one seed
    # depending on the machine's speed (and once reached only 5 operations): the phase runs
    # again with the next seed until the chains, together, reached what is asserted below.
    followed: set[str] = set()
    summary: tuple[list[str], str] = ([], "")
    for round_ in range(STATEFUL_ROUNDS):
        chained_report = tmp_path / f"stateful-{round_}.ndjson"
        chained = _schemathesis(
            deployment,
            key,
            chained_report,
            "stateful",
            SCENARIOS,
            _stateful_config(tmp_path),
            STATEFUL_HOOKS,
            seed=SEED + round_,
        )
        assert chained.returncode == 0, chained.stdout[-20_000:] + chained.stderr[-5_000:]
        # The links were followed: requests went from a creating answer to what it
        # created, runs included (read, cancelled, rerun, forked, diffed).
        followed |= _operations_reached_by_links(chained_report)
        summary = (sorted(followed), chained.stdout[-3_000:])
        if _reached_enough(followed):
            break
    # Which of a run's links a chain takes is random: some read of the run, and some change.
    assert followed & RUN_READS, summary
    assert followed & RUN_CHANGES, summary
    assert len(followed) >= MIN_FOLLOWED, summary


RUN_READS = {
    "GET /v1/runs/{run_id}",
    "GET /v1/runs/{run_id}/status",
    "GET /v1/runs/{run_id}/timeline",
    "GET /v1/runs/{run_id}/calls",
    "GET /v1/runs/{run_id}/diff/{other_id}",
}
RUN_CHANGES = {
    "POST /v1/runs/{run_id}/cancel",
    "POST /v1/runs/{run_id}/rerun",
    "POST /v1/runs/{run_id}/fork",
}
MIN_FOLLOWED = 8
STATEFUL_ROUNDS = 4


def _reached_enough(followed: set[str]) -> bool:
    return bool(followed & RUN_READS and followed & RUN_CHANGES) and len(followed) >= MIN_FOLLOWED


# What the stateful phase starts its chains from, made to exist first: generated workflow
# names and specs are (rightly) refused, so without these no run would ever be created and
# the run chains (read, cancel, rerun, fork, diff, timeline, calls) never followed.
SEED_WORKFLOW = "fuzzed"
SEED_SPEC = {
    "name": SEED_WORKFLOW,
    "inputs": {"who": {"type": "string", "default": "world"}},
    "tasks": [{"id": "hello", "tool": "transform", "with": {"greeting": "${{ inputs.who }}"}}],
    "output": "${{ tasks.hello.output.greeting }}",
}
# Appended to schemathesis.toml for the stateful phase only (the stateless phases keep
# generating every value): runs of the seeded workflow, and workflow registrations whose
# name and tasks are valid (the rest of the body is still generated).
STATEFUL_OVERRIDES = f"""
[phases.stateful.inference]
algorithms = []

[[operations]]
include-name = "POST /v1/runs"
parameters = {{ "body.workflow" = "{SEED_WORKFLOW}", "body.inputs" = {{ who = "ada" }} }}

[[operations]]
include-name = "POST /v1/workflows"
parameters = {{ "body.name" = "{SEED_WORKFLOW}-registered", "body.tasks" = [{{ id = "a", tool = "transform" }}] }}
"""


def _stateful_config(tmp_path: Path) -> Path:
    config = tmp_path / "schemathesis-stateful.toml"
    config.write_text(CONFIG.read_text() + STATEFUL_OVERRIDES)
    return config


def _seed(deployment: Cluster, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=deployment.url, headers=headers, timeout=30) as client:
        registered = client.post("/v1/workflows", json=SEED_SPEC)
        assert registered.status_code == 201, registered.text
        run = client.post("/v1/runs", json={"workflow": SEED_WORKFLOW, "inputs": {}})
        assert run.status_code == 201, run.text


def _operations_reached_by_links(report: Path) -> set[str]:
    """``METHOD /path`` of each request the stateful phase made with a link's values."""
    reached: set[str] = set()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if finished is None:
            continue
        for case in ((finished.get("recorder") or {}).get("cases") or {}).values():
            if case.get("is_transition_applied"):
                reached.add(f"{case['value']['method']} {case['value']['path']}")
    return reached
