"""Where a consumer batch's time goes (``cadenza_orchestrator_batch_phase_seconds`` and the
``orchestrator.batch`` span's ``cadenza.batch.<phase>_ms``): apply + write is the batch's
time up to the commit (``cadenza_orchestrator_batch_seconds``), then publish and the hot
status follow. An operator reads dispatch latency's orchestrator share from it."""

from __future__ import annotations

import pytest
from orchestrator_stack import Stack
from prometheus_client import REGISTRY
from support import assert_eventually
from support.tracing import capture_spans

PHASES = ("apply", "write", "publish", "hot_status")
SPEC = {
    "name": "phases",
    "tasks": [
        {"id": "a", "tool": "noop"},
        {"id": "b", "tool": "noop", "needs": ["a"]},
    ],
}


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def phase(kind: str, phase_name: str) -> float:
    return sample(f"cadenza_orchestrator_batch_phase_seconds_{kind}", {"phase": phase_name})


async def test_every_batch_is_split_into_its_phases(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = capture_spans(monkeypatch, "cadenza_orchestrator.handlers.tracer")
    batches = sample("cadenza_orchestrator_batch_seconds_count")
    up_to_commit = sample("cadenza_orchestrator_batch_seconds_sum")
    counts = {p: phase("count", p) for p in PHASES}
    sums = {p: phase("sum", p) for p in PHASES}

    run_id = await stack.submit(SPEC)
    assert (await stack.wait_run(run_id)).status == "succeeded"

    def settled() -> float:
        """The new batches, once each has observed its four phases (a batch's last two
        phases follow its commit, so the run can be seen finished before they are)."""
        new = sample("cadenza_orchestrator_batch_seconds_count") - batches
        assert new >= 3  # the plan and two results, at least
        for p in PHASES:  # one observation per phase per batch
            assert phase("count", p) - counts[p] == new, p
        return new

    await assert_eventually(settled, message="every batch observed its phases")
    spent = {p: phase("sum", p) - sums[p] for p in PHASES}
    assert spent["write"] > 0  # every batch wrote its rows
    assert spent["publish"] > 0  # and sent its task.ready or run events
    # apply and write split the time up to the commit, nothing more and nothing less.
    assert spent["apply"] + spent["write"] == pytest.approx(
        sample("cadenza_orchestrator_batch_seconds_sum") - up_to_commit, rel=1e-6, abs=1e-9
    )
    # The results' batches continue the fake worker's unsampled traces: the plan's is here.
    spans = [s for s in exporter.get_finished_spans() if s.name == "orchestrator.batch"]
    assert spans
    for span in spans:
        attributes = dict(span.attributes or {})
        for p in PHASES:
            assert attributes[f"cadenza.batch.{p}_ms"] >= 0, (p, attributes)
        assert attributes["cadenza.batch.write_ms"] > 0
