"""infra/prometheus/alerts.yml: every rule is valid and fires exactly as its unit test in
alerts.test.yml says (`promtool test rules`), names only metrics the services export, and
has a runbook entry in docs/observability.md. That Prometheus loads them is checked against
the real one in test_obs_platform.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cadenza_cli.infra.paths import infra_dir, repo_root
from prometheus_client import REGISTRY
from support import service_missing

RULES = infra_dir() / "prometheus" / "alerts.yml"
RULE_TESTS = infra_dir() / "prometheus" / "alerts.test.yml"
RUNBOOK = repo_root() / "docs" / "observability.md"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        service_missing("promtool (the prometheus package: cadenza infra up --with prometheus)")
    return subprocess.run(
        [binary, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
def test_the_rules_are_valid_and_fire_as_their_unit_tests_say() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(alerts())} rules found" in checked.stdout
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.unit
def test_every_alert_is_tested_firing_and_quiet() -> None:
    """Each alert has a case where it fires and one where it does not (promtool runs only
    the cases written down: an alert without one would pass untested)."""
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    for rule in alerts():
        assert sorted(set(cases.get(rule["alert"], []))) == [False, True], rule["alert"]


def exported_series() -> set[str]:
    """Every series name the services' metrics modules register (as Prometheus sees them:
    a counter's ``_total``, a histogram's ``_bucket``/``_sum``/``_count``). Every service's
    metrics module is imported here: the test must not pass only because another test
    imported one first."""
    import cadenza_events.metrics  # noqa: F401
    import cadenza_gateway.metrics  # noqa: F401
    import cadenza_orchestrator.metrics  # noqa: F401
    import cadenza_retrieval.metrics  # noqa: F401
    import cadenza_runtime.relay  # noqa: F401
    import cadenza_trigger.metrics  # noqa: F401
    import cadenza_triggers.metrics  # noqa: F401
    import cadenza_worker.metrics  # noqa: F401

    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


@pytest.mark.unit
def test_every_rule_names_metrics_the_services_export() -> None:
    exported = exported_series()
    for rule in alerts():
        for name in re.findall(r"\bcadenza_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']}: no service exports {name}"


@pytest.mark.unit
def test_every_alert_has_a_runbook_entry() -> None:
    """``runbook_url`` points at a heading of docs/observability.md named after the alert."""
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        assert url == f"docs/observability.md#{rule['alert'].lower()}", url
        assert rule["alert"].lower() in headings, f"no runbook heading for {rule['alert']}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}


@pytest.mark.unit
def test_the_local_compose_and_helm_prometheus_load_the_same_rules() -> None:
    local = yaml.safe_load((infra_dir() / "prometheus" / "prometheus.yml").read_text())
    assert local["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((infra_dir() / "compose" / "prometheus.yml").read_text())
    assert compose["rule_files"] == ["/etc/prometheus/alerts.yml"]
    mounts = yaml.safe_load((repo_root() / "docker-compose.yml").read_text())["services"][
        "prometheus"
    ]["volumes"]
    assert "./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    chart = repo_root() / "helm" / "cadenza" / "alerts.yml"
    assert Path(chart).resolve() == RULES.resolve()  # the chart's link
