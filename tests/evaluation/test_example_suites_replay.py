"""The example suites run end to end — each through the engine on a dev stack, the agents (and
the judge) answering from one cassette recorded from the embedded model:

    CADENZA_TEST_LLM=record uv run pytest tests/evaluation/test_example_suites_replay.py

re-records it (the real model answers; slow). Replay needs no model and no network. The
command itself (`cadenza eval` as a subprocess) is tested in tests/cli/test_eval_command.py;
here the suites run in process through the same `evaluate()` to keep the module fast."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from cadenza_cli.dev import DevStack, dev_settings
from cadenza_cli.evaluate import evaluate
from cadenza_evaluation import criterion_name, load_suite
from cadenza_evaluation.suite import MaxSteps
from cadenza_runtime import open_resources

pytestmark = [pytest.mark.unit, pytest.mark.asyncio(loop_scope="module")]
ROOT = Path(__file__).resolve().parents[2]
CASSETTE = Path(__file__).parent / "cassettes" / "examples.json"
MODE = "record" if os.environ.get("CADENZA_TEST_LLM") == "record" else "replay"
BUNDLES = ["payment-triage", "support-escalation", "handbook-qa"]


@pytest.fixture(scope="module")
def cassette_env() -> Iterator[None]:
    # The worker's provider registry and the judge both read CADENZA_LLM_* from the env.
    saved = {
        k: os.environ.get(k) for k in ("CADENZA_LLM_CASSETTE_MODE", "CADENZA_LLM_CASSETTE_PATH")
    }
    os.environ["CADENZA_LLM_CASSETTE_MODE"] = MODE
    os.environ["CADENZA_LLM_CASSETTE_PATH"] = str(CASSETTE)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    cassette_env: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DevStack]:
    data_dir = tmp_path_factory.mktemp("examples")
    resources = await open_resources(*dev_settings(data_dir))
    dev = DevStack(resources, port=0, data_dir=data_dir)
    await dev.start()
    yield dev
    await dev.stop()


@pytest.mark.timeout(1200 if MODE == "record" else 240)
@pytest.mark.parametrize("name", BUNDLES)
async def test_example_suite_runs_on_the_cassette(stack: DevStack, name: str) -> None:
    suite = load_suite(ROOT / "examples" / name / "eval.yaml")
    baseline, tested, stored = await evaluate(suite, stack.url, None, None)
    assert baseline == []
    cases = {case.name: case for case in suite.cases}
    assert {r.case for r in tested} == set(cases)
    assert stored.passed == all(r.passed for r in tested)
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        listed = (await client.get("/v1/evaluations", params={"suite": name})).json()["items"]
        assert [e["id"] for e in listed] == [stored.id]
        for result in tested:
            assert result.error is None, result  # no cassette miss, no failed submission
            if result.status != "succeeded":
                run = (await client.get(f"/v1/runs/{result.run_id}")).json()
                errors = [t.get("error") for t in run.get("tasks", []) if t.get("error")]
                raise AssertionError(f"run {result.run_id} {result.status}: {errors}")
            timeline = (await client.get(f"/v1/runs/{result.run_id}/timeline")).json()
            turns = {t["node_id"]: len(t["llm_calls"]) for t in timeline["tasks"]}
            assert sum(turns.values()) > 0  # agents ran (answered from the cassette)
            criteria = cases[result.case].criteria
            assert [s.criterion for s in result.scores] == [criterion_name(c) for c in criteria]
            for s, criterion in zip(result.scores, criteria, strict=True):
                assert s.detail
                assert "judge failed" not in s.detail, s  # the judge replayed too
                if isinstance(criterion, MaxSteps):
                    # The step count is the timeline's, restricted to the criterion's tasks.
                    expected = sum(turns.get(t, 0) for t in criterion.tasks or list(turns))
                    assert s.detail.startswith(f"{expected} step(s)"), s
                    assert s.passed == (expected <= criterion.max_steps)
