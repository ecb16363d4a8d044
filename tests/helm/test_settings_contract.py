"""Every CADENZA_* variable the chart and the compose files set is one a service reads: a
renamed setting fails here instead of being silently ignored by a deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cadenza_events import BusSettings
from cadenza_gateway.auth import AuthSettings
from cadenza_gateway.settings import GatewaySettings
from cadenza_llm.settings import LLMSettings
from cadenza_orchestrator.settings import OrchestratorSettings
from cadenza_rag.settings import RagSettings
from cadenza_retrieval.settings import RetrievalSettings
from cadenza_runtime import MetricsSettings
from cadenza_state import StateSettings
from cadenza_trigger.settings import TriggerSettings
from cadenza_worker.settings import WorkerSettings
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from .conftest import Render
from .test_chart import VALUE_SETS, by_kind, values

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1800)  # the first test may build helm
SETTINGS: list[type[BaseSettings]] = [
    BusSettings, StateSettings, GatewaySettings, OrchestratorSettings, WorkerSettings,
    RagSettings, RetrievalSettings, LLMSettings, AuthSettings, TriggerSettings, MetricsSettings,
]  # fmt: skip
# Read straight from the environment (cadenza_runtime.telemetry, the services' __main__).
RAW = {"CADENZA_LOG_LEVEL"}
# Not for Cadenza's services: compose's own settings, and the dashboards folder that
# infra/grafana's provider file reads inside the Grafana container.
COMPOSE_ONLY = {"CADENZA_IMAGE", "CADENZA_BASE_IMAGE", "CADENZA_GRAFANA_DASHBOARDS"}


def known_variables() -> set[str]:
    names = set(RAW)
    for cls in SETTINGS:
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        for field_name, field in cls.model_fields.items():
            names.add(f"{prefix}{field_name.upper()}")
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(c).upper() for c in alias.choices if isinstance(c, str))
            elif isinstance(alias, str):
                names.add(alias.upper())
    return names


def set_variables(docs: list[dict]) -> Iterator[str]:
    for cm in by_kind(docs, "ConfigMap"):
        if cm["metadata"]["name"].endswith("-config"):
            yield from cm["data"]
    for secret in by_kind(docs, "Secret"):
        yield from secret.get("stringData", {})
    for kind in ("Deployment", "Job"):
        for obj in by_kind(docs, kind):
            for c in obj["spec"]["template"]["spec"]["containers"]:
                yield from (e["name"] for e in c.get("env", []))


def cadenza(names: Iterator[str]) -> set[str]:
    return {n for n in names if n.startswith("CADENZA_") and "__" not in n}


def test_the_contract_knows_the_settings() -> None:
    known = known_variables()
    assert {"CADENZA_BUS_BOOTSTRAP_SERVERS", "CADENZA_DATABASE_URL",
            "CADENZA_WORKER_CONSUMER_GROUP", "CADENZA_RETRIEVAL_SEARCH_URL"} <= known  # fmt: skip
    assert "CADENZA_WORKER_CONSUMER_GRUOP" not in known


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_sets_only_variables_services_read(render: Render, value_set: str) -> None:
    unknown = cadenza(set_variables(render(*values(value_set)))) - known_variables()
    assert not unknown, f"the chart sets variables no service reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.host.yml"])
def test_compose_sets_only_variables_services_read(name: str) -> None:
    text = (REPO / name).read_text()
    # The files' environment blocks are YAML anchors; the custom !reset/!override tags
    # are compose's, read here as plain values.
    loader = type("ComposeLoader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
    doc = yaml.load(text, Loader=loader)
    names: set[str] = set()
    for key, block in doc.items():
        if key.startswith("x-") and isinstance(block, dict):
            env = block.get("environment", block)
            names |= {k for k in env if isinstance(k, str)}
    for service in (doc.get("services") or {}).values():
        if isinstance(service, dict) and isinstance(service.get("environment"), dict):
            names |= set(service["environment"])
    unknown = cadenza(iter(names)) - known_variables() - COMPOSE_ONLY
    assert names, name
    assert not unknown, f"{name} sets variables no service reads: {sorted(unknown)}"
