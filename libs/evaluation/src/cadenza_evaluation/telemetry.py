"""OpenTelemetry: each criterion's result is a ``gen_ai.evaluation.result`` event (GenAI
semantic conventions: ``gen_ai.evaluation.name``, ``gen_ai.evaluation.score.value``,
``gen_ai.evaluation.score.label`` pass/fail, ``gen_ai.evaluation.explanation``) on an
``evaluate <suite>`` span per case, which carries the run id."""

from __future__ import annotations

from opentelemetry import trace

from .results import CaseResult

tracer = trace.get_tracer("cadenza.evaluation")
EVENT = "gen_ai.evaluation.result"


def emit_results(suite: str, result: CaseResult) -> None:
    with tracer.start_as_current_span(f"evaluate {suite}") as span:
        span.set_attribute("cadenza.evaluation.suite", suite)
        span.set_attribute("cadenza.evaluation.case", result.case)
        span.set_attribute("cadenza.evaluation.variant", result.variant)
        if result.run_id:
            span.set_attribute("cadenza.run_id", result.run_id)
        if result.error:
            span.add_event(
                EVENT,
                {
                    "gen_ai.evaluation.name": "case",
                    "error.type": "run_error",
                    "gen_ai.evaluation.explanation": result.error[:500],
                },
            )
        for s in result.scores:
            span.add_event(
                EVENT,
                {
                    "gen_ai.evaluation.name": s.criterion,
                    "gen_ai.evaluation.score.value": s.score,
                    "gen_ai.evaluation.score.label": "pass" if s.passed else "fail",
                    "gen_ai.evaluation.explanation": s.detail[:500],
                },
            )
