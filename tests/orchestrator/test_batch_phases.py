"""Where a consumer batch's time goes (``cadenza_orchestrator_batch_phase_seconds``, and
``cadenza.batch.<phase>_ms`` on the ``orchestrator.batch`` span and its
``orchestrator.after_commit`` child): apply + write is the batch's time up to the commit
(``cadenza_orchestrator_batch_seconds``); then, while the next batch is applied, the wait
for the previous commit's after-commit work (queued), the publish and the hot status. An
operator reads dispatch latency's orchestrator share from it."""

from __future__ import annotations

import pytest
from orchestrator_stack import Stack
from prometheus_client import REGISTRY
from support import assert_eventually
from support.tracing import capture_spans

PHASES = ("apply", "write", "queued", "publish", "hot_status")
AFTER_COMMIT = PHASES[2:]
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
        """The new batches, once each has observed its phases (a batch's last three
        follow its commit, so the run can be seen finished before they are)."""
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
    finished = exporter.get_finished_spans()
    batches = [s for s in finished if s.name == "orchestrator.batch"]
    assert batches
    for span in batches:
        attributes = dict(span.attributes or {})
        assert attributes["cadenza.batch.apply_ms"] >= 0, attributes
        assert attributes["cadenza.batch.write_ms"] > 0, attributes
        # Each batch's after-commit work is a span of its own, its child.
        children = [
            s
            for s in finished
            if s.name == "orchestrator.after_commit"
            and s.parent is not None
            and s.parent.span_id == span.context.span_id
        ]
        assert len(children) == 1, children
        after = dict(children[0].attributes or {})
        for p in AFTER_COMMIT:
            assert after[f"cadenza.batch.{p}_ms"] >= 0, (p, after)
