"""`cadenza eval SUITE` on a dev stack: cases run through the engine, criteria scored, results
stored through /v1/evaluations, a table printed, exit 1 on a failure or a regression."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import typer
from cadenza_cli.dev import DevStack
from cadenza_cli.evaluate import pinned_request
from prometheus_client import REGISTRY
from support.cli import ROOT
from test_run_commands import cadenza, stack

__all__ = ["stack"]  # a fixture: used by name

pytestmark = pytest.mark.unit

SUITE = """\
name: hello-suite
target: {target}
cases:
  - name: capitalises
    inputs: {{customer: grace hopper}}
    criteria:
      - output_matches: {{expression: "output.customer == 'Grace Hopper'"}}
      - max_steps: 3
      - no_repeated_call: true
      - cost_usd_below: 0.01
      - latency_below: 120
  - name: wrong expectation
    inputs: {{customer: ada}}
    criteria:
      - output_matches: {{expression: "output.customer == 'Grace Hopper'"}}
      - output_matches: {{schema: {{type: object, required: [customer]}}}}
"""


async def test_eval_scores_stores_and_fails_on_a_failed_case(
    stack: DevStack, tmp_path: Path
) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(target=ROOT / "examples" / "hello.yaml"))
    code, out, err = await cadenza("eval", str(suite), "--url", stack.url)
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["case", "variant", "result", "credit"]
    passing = next(line for line in lines if line.startswith("capitalises"))
    failing = next(line for line in lines if line.startswith("wrong expectation"))
    assert "PASS" in passing
    assert "1.00" in passing
    assert "FAIL" in failing
    assert "0.50" in failing  # one of two criteria passed: partial credit

    async with httpx.AsyncClient(base_url=stack.url) as client:
        listed = (await client.get("/v1/evaluations", params={"suite": "hello-suite"})).json()
        (stored,) = listed["items"]
        assert stored["passed"] is False
        assert stored["summary"]["cases"] == 2
        assert stored["summary"]["passed"] == 1
        one = (await client.get(f"/v1/evaluations/{stored['id']}")).json()
        results = {r["case"]: r for r in one["results"]}
        assert results["capitalises"]["run_id"]
        run = (await client.get(f"/v1/runs/{results['capitalises']['run_id']}")).json()
        assert run["output"]["customer"] == "Grace Hopper"
        stored_metric = [
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "cadenza_gateway_evaluations"
            for sample in metric.samples
            if sample.name.endswith("_total")
            and sample.labels.get("suite") == "hello-suite"
            and sample.labels.get("outcome") == "failed"
        ]
        assert stored_metric == [1.0]
        missing = await client.get("/v1/evaluations/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404
        assert missing.json()["title"] == "Evaluation not found"


async def test_eval_names_the_field_of_a_bad_suite(tmp_path: Path) -> None:
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: x\ncases:\n  - name: c\n    criteria: [{max_steps: 0}]\n")
    code, _, err = await cadenza("eval", str(suite), "--url", "http://127.0.0.1:9")
    assert code == 2
    assert "bad.yaml: invalid suite" in err
    assert "cases.0.criteria.0" in err


def test_agent_under_test_is_pinned_through_the_spec_agents_map() -> None:
    body = {"spec": "name: w\nagents: {other: 1}\ntasks: []\n", "inputs": {"a": 1}}
    pinned = pinned_request(body, {"b": 2}, "classifier@3")
    assert pinned["spec"]["agents"] == {"other": 1, "classifier": 3}
    assert pinned["inputs"] == {"a": 1, "b": 2}
    assert body["spec"].startswith("name: w")  # the shared base is not modified
    assert pinned_request(body, {}, None)["spec"] == body["spec"]
    with pytest.raises(typer.BadParameter, match="name@version"):
        pinned_request(body, {}, "classifier")
