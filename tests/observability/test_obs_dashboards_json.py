"""The Grafana dashboards and provisioning files are well-formed (their queries are checked
against a real Prometheus in test_obs_platform.py)."""

from __future__ import annotations

import json

import pytest
import yaml
from cadenza_cli.infra.paths import infra_dir

pytestmark = pytest.mark.unit

DASHBOARDS = infra_dir() / "grafana" / "dashboards"


def test_dashboards_are_valid_grafana_json() -> None:
    uids = set()
    for path in DASHBOARDS.glob("*.json"):
        board = json.loads(path.read_text())
        assert board["uid"] not in uids
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "cadenza-prometheus"
            assert panel["targets"], f"{path.name}: {panel['title']} has no query"
    assert uids == {
        "cadenza-overview",
        "cadenza-runs-tasks",
        "cadenza-llm",
        "cadenza-kafka",
        "cadenza-rag",
        "cadenza-triggers",
    }
    provisioning = infra_dir() / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "cadenza.yml").read_text())
    assert datasources["datasources"][0]["uid"] == "cadenza-prometheus"
    providers = yaml.safe_load((provisioning / "dashboards" / "cadenza.yml").read_text())
    assert providers["providers"][0]["type"] == "file"


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((infra_dir() / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs["cadenza-gateway"] == ["127.0.0.1:8080"]
    assert jobs["cadenza-orchestrator"] == ["127.0.0.1:9101"]
    assert jobs["cadenza-worker"] == ["127.0.0.1:9102"]
    assert jobs["cadenza-trigger"] == ["127.0.0.1:9106"]
    assert jobs["cadenza-rag-ingest"] == ["127.0.0.1:9103"]
