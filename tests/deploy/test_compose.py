"""Cadenza's image and docker-compose.yml run for real: the services as containers (through
docker-compose.host.yml, on the host's network and its `cadenza infra up` services, in a
namespace of their own), a workflow and an agent run submitted through them, a graceful
stop, then everything removed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from cadenza_events import BusSettings
from cadenza_events.kafka import KafkaBus
from cadenza_state import StateSettings
from cadenza_state.objects import S3ObjectStore
from support.cleanup import drop_bucket, drop_schema

from .conftest import REPO, ComposeDeployment

# The image build (minutes when the lock changed) runs in the first test's setup.
pytestmark = pytest.mark.timeout(1800)

SERVICES = {"migrate", "gateway", "orchestrator", "worker", "rag-ingest", "trigger"}
GREETER = {
    "name": "greeter",
    "system_prompt": "You greet people in one short sentence.",
    "model": "local:smollm2-135m",
    "tools": [],
    "max_iterations": 1,
}
GREET = {"name": "greet", "tasks": [{"id": "greet", "agent": "greeter", "prompt": "Greet Ada."}]}


@pytest.fixture
async def running(deployment: ComposeDeployment) -> AsyncIterator[ComposeDeployment]:
    started = time.monotonic()
    try:
        deployment.run("up", "--detach", "--no-build", "--wait", "--wait-timeout", "240")
        print(f"compose up --wait: {time.monotonic() - started:.1f} s")
        yield deployment
    finally:
        # The deployment fixture's `down` runs after this; the namespace's data goes last.
        deployment.run("down", "--volumes", "--remove-orphans", "--timeout", "60", check=False)
        settings = StateSettings(
            database_schema=deployment.namespace, s3_bucket=deployment.namespace
        )
        await drop_schema(settings)
        await asyncio.to_thread(drop_bucket, S3ObjectStore.from_settings(settings))
        await KafkaBus(BusSettings(topic_prefix=f"{deployment.namespace}.")).delete_topics()


async def wait_for_run(api: httpx.AsyncClient, run_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = (await api.get(f"/v1/runs/{run_id}")).json()
        if run["status"] in {"succeeded", "failed", "cancelled"}:
            return run
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run_id} not finished after {timeout_s} s: {run}")


def container_states(deployment: ComposeDeployment) -> dict[str, list[dict]]:
    """service -> [{'status', 'health', 'exit_code', 'user'}] from `docker inspect`."""
    ids = deployment.container_ids()
    out = subprocess.run(
        ["docker", "inspect", *ids], capture_output=True, text=True, check=True
    ).stdout
    states: dict[str, list[dict]] = {}
    for item in json.loads(out):
        service = item["Config"]["Labels"]["com.docker.compose.service"]
        states.setdefault(service, []).append(
            {
                "status": item["State"]["Status"],
                "health": (item["State"].get("Health") or {}).get("Status"),
                "exit_code": item["State"]["ExitCode"],
                "user": item["Config"]["User"],
                "image": item["Config"]["Image"],
            }
        )
    return states


def env_file_value(name: str) -> str:
    """A setting of the compose project's ``.env`` (what compose itself reads)."""
    for line in (REPO / ".env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            return value.strip()
    raise AssertionError(f"{name} is not in .env")


async def test_compose_runs_a_workflow_and_an_agent_and_stops_gracefully(
    running: ComposeDeployment,
) -> None:
    states = container_states(running)
    assert set(states) == SERVICES, states
    assert len(states["worker"]) == 2  # CADENZA_WORKERS in .env
    for service, containers in states.items():
        for c in containers:
            assert c["image"] == running.image
            assert c["user"] == "10001:10001", f"{service} runs as {c['user']!r}"
            if service == "migrate":
                assert (c["status"], c["exit_code"]) == ("exited", 0)
            else:
                assert (c["status"], c["health"]) == ("running", "healthy"), (service, c)

    async with httpx.AsyncClient(base_url=running.url, timeout=30) as api:
        ready = (await api.get("/readyz")).json()
        assert ready["status"] == "ready", ready

        # The README's example, from the checkout's examples/ as `cadenza run` sends it.
        spec = yaml.safe_load((REPO / "examples/hello.yaml").read_text())
        created = await api.post("/v1/runs", json={"spec": spec, "inputs": {"customer": "acme"}})
        assert created.status_code in (200, 201, 202), created.text
        run = await wait_for_run(api, created.json()["id"], 90)
        assert run["status"] == "succeeded", run
        assert run["output"] == {"customer": "Acme", "total": 148.0, "needs_review": True}
        assert {t["node_id"] for t in run["tasks"]} >= {"prepare", "price_line", "summary"}

        # An agent on the embedded model (inside the image: no network, no key).
        assert (await api.post("/v1/agents", json=GREETER)).status_code == 201
        created = await api.post("/v1/runs", json={"spec": GREET, "inputs": {}})
        assert created.status_code in (200, 201, 202), created.text
        agent_run = await wait_for_run(api, created.json()["id"], 240)
        assert agent_run["status"] == "succeeded", agent_run
        (task,) = agent_run["tasks"]
        assert task["status"] == "succeeded"
        assert agent_run["usage"]["total"]["llm_calls"] >= 1, agent_run["usage"]
        assert agent_run["usage"]["by_model"].keys() == {"local:smollm2-135m"}

        # The orchestrator's metrics port answers on the host (host networking), to the
        # operators' scraper token from .env only (its labels name tenants).
        url = f"http://127.0.0.1:{running.orchestrator_metrics_port}/metrics"
        assert (await api.get(url)).status_code == 401
        token = env_file_value("CADENZA_METRICS_TOKEN")
        metrics = await api.get(url, headers={"Authorization": f"Bearer {token}"})
        assert metrics.status_code == 200, metrics.text
        assert "cadenza_" in metrics.text

    # SIGTERM drains: every service exits 0 on `compose stop` within its grace period,
    # none is killed (137).
    started = time.monotonic()
    running.run("stop", "--timeout", "60")
    stopped = container_states(running)
    for service, containers in stopped.items():
        for c in containers:
            assert (c["status"], c["exit_code"]) == ("exited", 0), (service, c)
    print(f"compose stop: {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 60


def test_image_has_no_build_tools_and_runs_every_entry_point(image: str) -> None:
    """The runtime image: no uv, no compiler; `cadenza --help` lists every service."""
    out = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--entrypoint", "sh", image, "-c",
         "command -v uv gcc cc pip || true; id -u; cadenza --help"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "10001", out  # no uv/gcc/pip printed before the uid
    for command in ("gateway", "orchestrator", "worker", "rag-ingest", "trigger", "migrate"):
        assert command in out


def test_dockerfile_base_is_a_build_argument() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    assert Path(REPO / "infra/docker/base-image.sh").stat().st_mode & 0o111


def test_the_full_platform_file_is_complete(compose_bin: Path) -> None:
    """docker-compose.yml alone (what `docker compose up` runs on a laptop), as compose
    resolves it: every service, official infra images, health-checked start order, named
    volumes. (Its infra images need a registry, so only the host-network variant runs here.)"""
    proc = subprocess.run(
        [str(compose_bin), "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout)
    services = config["services"]
    infra = {"kafka", "postgres", "redis", "minio", "prometheus", "grafana", "otel-collector"}
    assert set(services) == SERVICES | infra
    official = ("apache/kafka:", "postgres:", "redis:", "minio/minio:", "prom/prometheus:",
                "grafana/grafana:", "otel/opentelemetry-collector:")  # fmt: skip
    assert sorted(services[name]["image"].split(":")[0] + ":" for name in infra) == sorted(official)
    for name in ("kafka", "postgres", "redis", "minio", "prometheus"):
        assert services[name]["healthcheck"]["test"], name
        assert any(v["type"] == "volume" for v in services[name]["volumes"]), name
    for name in SERVICES:
        assert services[name]["image"] == "cadenza:dev"
        assert services[name]["read_only"] is True
        assert services[name]["command"] == [name]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("gateway", "orchestrator", "worker", "rag-ingest", "trigger"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["kafka"]["condition"] == "service_healthy", name
    assert services["worker"]["deploy"]["replicas"] == 2
    # Grafana gets the repo's dashboards; Prometheus a config scraping every service.
    mounts = {
        v["source"]: v["target"] for v in services["grafana"]["volumes"] if v["type"] == "bind"
    }
    assert mounts[str(REPO / "infra/grafana/dashboards")] == "/var/lib/grafana/dashboards/cadenza"
    scrape = yaml.safe_load((REPO / "infra/compose/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert {
        "cadenza-gateway",
        "cadenza-orchestrator",
        "cadenza-worker",
        "cadenza-rag-ingest",
        "cadenza-trigger",
    } <= jobs
