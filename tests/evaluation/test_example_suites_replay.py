"""The example suites run end to end — `cadenza eval` against a dev stack whose agents (and
the judge) answer from cassettes recorded from the embedded model:

    CADENZA_TEST_LLM=record uv run pytest tests/evaluation/test_example_suites_replay.py

re-records them (the real model answers; slow). Replay needs no model and no network."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_evaluation import criterion_name, load_suite
from cadenza_evaluation.suite import MaxSteps
from cadenza_runtime import open_resources
from cli.test_run_commands import cadenza  # the CLI as a subprocess

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CASSETTES = Path(__file__).parent / "cassettes"
MODE = "record" if os.environ.get("CADENZA_TEST_LLM") == "record" else "replay"
BUNDLES = ["payment-triage", "support-escalation", "handbook-qa"]


@pytest.fixture
async def replay_stack(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DevStack]:
    # The worker's provider registry and the `cadenza eval` subprocess (its judge) both read
    # CADENZA_LLM_* from the environment.
    monkeypatch.setenv("CADENZA_LLM_CASSETTE_MODE", MODE)
    monkeypatch.setenv("CADENZA_LLM_CASSETTE_PATH", str(CASSETTES / f"{request.param}.json"))
    resources = await open_resources(*dev_settings(tmp_path))
    dev = DevStack(resources, port=0, data_dir=tmp_path)
    await dev.start()
    yield dev
    await dev.stop()


@pytest.mark.timeout(1200 if MODE == "record" else 300)
@pytest.mark.parametrize("replay_stack", BUNDLES, indirect=True)
async def test_example_suite_runs_on_cassettes(replay_stack: DevStack) -> None:
    name = Path(os.environ["CADENZA_LLM_CASSETTE_PATH"]).stem
    suite = ROOT / "examples" / name / "eval.yaml"
    code, out, err = await cadenza(
        "eval", str(suite), "--url", replay_stack.url, timeout=900 if MODE == "record" else 240
    )
    assert code in (0, 1), err  # scored (pass or fail), never a broken suite or gateway
    assert "cassette_miss" not in err

    cases = {case.name: case for case in load_suite(suite).cases}
    async with httpx.AsyncClient(base_url=replay_stack.url, timeout=30) as client:
        (stored,) = (await client.get("/v1/evaluations", params={"suite": name})).json()["items"]
        assert (code == 0) == stored["passed"]
        assert {r["case"] for r in stored["results"]} == set(cases)
        for result in stored["results"]:
            assert result["error"] is None, result
            assert result["status"] == "succeeded", result
            assert result["case"] in out
            timeline = (await client.get(f"/v1/runs/{result['run_id']}/timeline")).json()
            turns = {t["node_id"]: len(t["llm_calls"]) for t in timeline["tasks"]}
            assert sum(turns.values()) > 0  # agents ran (answered from the cassette)
            criteria = cases[result["case"]].criteria
            assert [s["criterion"] for s in result["scores"]] == [
                criterion_name(c) for c in criteria
            ]
            for s, criterion in zip(result["scores"], criteria, strict=True):
                if isinstance(criterion, MaxSteps):
                    # The step count is the timeline's, restricted to the criterion's tasks.
                    tasks = criterion.tasks or list(turns)
                    expected = sum(turns.get(t, 0) for t in tasks)
                    assert s["detail"].startswith(f"{expected} step(s)"), s
                    assert s["passed"] == (expected <= criterion.max_steps)
