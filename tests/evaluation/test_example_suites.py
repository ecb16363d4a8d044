"""The example suites shipped with the bundles parse and target their bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cadenza_cli.bundles import load_bundle
from cadenza_evaluation import load_suite

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("bundle", ["payment-triage", "support-escalation", "handbook-qa"])
def test_example_suite_loads_and_targets_its_bundle(bundle: str) -> None:
    suite = load_suite(ROOT / "examples" / bundle / "eval.yaml")
    assert suite.name == bundle
    loaded = load_bundle(suite.target_path())
    assert loaded.root == (ROOT / "examples" / bundle).resolve()
    declared = set(yaml.safe_load(loaded.workflow_path.read_text())["inputs"])
    for case in suite.cases:
        assert set(case.inputs) <= declared, case.name  # only inputs the workflow declares
