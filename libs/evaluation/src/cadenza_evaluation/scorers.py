"""Pure scorers: one criterion over one trajectory -> a :class:`Score` (pass/fail and a
partial credit in [0, 1]). The judge, which calls a model, is in ``judge.py``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import jsonschema
from cadenza_workflow import ExpressionError, compile_expression

from .suite import (
    CostBelow,
    LatencyBelow,
    MaxSteps,
    NoRepeatedCall,
    OutputMatches,
    ToolCalled,
    ToolsAnyOrder,
    ToolsInOrder,
    criterion_name,
)
from .trajectory import Trajectory


@dataclass(frozen=True)
class Score:
    criterion: str
    passed: bool
    score: float  # partial credit in [0, 1]; 1.0 when passed
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "passed": self.passed,
            "score": round(self.score, 4),
            "detail": self.detail,
        }


def _score(criterion: Any, passed: bool, credit: float, detail: str) -> Score:
    return Score(criterion_name(criterion), passed, 1.0 if passed else credit, detail)


def longest_common_subsequence(expected: list[str], actual: list[str]) -> int:
    """Length of the longest subsequence of ``expected`` found in ``actual`` in order."""
    row = [0] * (len(actual) + 1)
    for want in expected:
        previous = 0
        for j, got in enumerate(actual, 1):
            current = row[j]
            row[j] = previous + 1 if want == got else max(row[j], row[j - 1])
            previous = current
    return row[-1]


def tool_called(c: ToolCalled, t: Trajectory) -> Score:
    steps = t.of_tasks(c.tasks)
    index = next(
        (i for i, s in enumerate(steps) if s.kind == "tool" and s.name == c.tool_called), None
    )
    if index is None:
        called = sorted({s.name for s in steps if s.kind == "tool"}) or ["no tool"]
        return _score(c, False, 0.0, f"{c.tool_called} never called (called: {', '.join(called)})")
    if c.before == "answer":
        # The answer is an LLM turn that asked for no tool: the call must come before one.
        answered = any(s.kind == "llm" and s.tool_calls == 0 for s in steps[index + 1 :])
        if not answered:
            return _score(c, False, 0.5, f"{c.tool_called} called, but no answer after it")
    return _score(c, True, 1.0, f"{c.tool_called} called at step {index + 1}")


def max_steps(c: MaxSteps, t: Trajectory) -> Score:
    """Step efficiency: partial credit ``max_steps / steps`` when over the limit."""
    steps = len(t.turns(c.tasks))
    if steps <= c.max_steps:
        return _score(c, True, 1.0, f"{steps} step(s) <= {c.max_steps}")
    return _score(c, False, c.max_steps / steps, f"{steps} step(s) > {c.max_steps}")


def no_repeated_call(c: NoRepeatedCall, t: Trajectory) -> Score:
    """No tool called twice with the same arguments; credit = distinct / total calls."""
    calls = [(s.name, s.arguments_digest) for s in t.tools(c.tasks)]
    repeated = {k: n for k, n in Counter(calls).items() if n > 1}
    if not c.no_repeated_call or not repeated:
        return _score(c, True, 1.0, f"{len(calls)} call(s), none repeated")
    names = ", ".join(f"{name} x{n}" for (name, _), n in repeated.items())
    return _score(c, False, len(set(calls)) / len(calls), f"repeated: {names}")


def tools_in_order(c: ToolsInOrder, t: Trajectory) -> Score:
    """The expected tools as a subsequence of the calls; credit = LCS / expected."""
    actual = [s.name for s in t.tools(c.tasks)]
    matched = longest_common_subsequence(c.tools_in_order, actual)
    detail = f"{matched}/{len(c.tools_in_order)} in order (calls: {', '.join(actual) or 'none'})"
    return _score(c, matched == len(c.tools_in_order), matched / len(c.tools_in_order), detail)


def tools_any_order(c: ToolsAnyOrder, t: Trajectory) -> Score:
    """Every expected tool called at least once; credit = share of them called."""
    actual = {s.name for s in t.tools(c.tasks)}
    expected = list(dict.fromkeys(c.tools_any_order))
    found = [name for name in expected if name in actual]
    missing = [name for name in expected if name not in actual]
    detail = f"{len(found)}/{len(expected)} called" + (
        f" (missing: {', '.join(missing)})" if missing else ""
    )
    return _score(c, not missing, len(found) / len(expected), detail)


def output_matches(c: OutputMatches, t: Trajectory) -> Score:
    match = c.output_matches
    if match.json_schema is not None:
        validator = jsonschema.validators.validator_for(match.json_schema)(match.json_schema)
        errors = sorted(validator.iter_errors(t.output), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            return _score(c, False, 0.0, f"at {where}: {errors[0].message[:200]}")
        return _score(c, True, 1.0, "output matches the schema")
    assert match.expression is not None
    try:
        value = compile_expression(match.expression).evaluate(
            {"output": t.output, "run": {"status": t.status}}
        )
    except ExpressionError as exc:
        return _score(c, False, 0.0, f"expression failed: {exc}")
    return _score(c, bool(value), 0.0, f"{match.expression} -> {value!r}")


def cost_below(c: CostBelow, t: Trajectory) -> Score:
    detail = f"${t.cost_usd:.6f} vs ${c.cost_usd_below}"
    return _score(c, t.cost_usd < c.cost_usd_below, 0.0, detail)


def latency_below(c: LatencyBelow, t: Trajectory) -> Score:
    if t.latency_s is None:
        return _score(c, False, 0.0, "the run has not finished")
    return _score(
        c, t.latency_s < c.latency_below, 0.0, f"{t.latency_s:.2f}s vs {c.latency_below}s"
    )


SCORERS: dict[type, Any] = {
    ToolCalled: tool_called,
    MaxSteps: max_steps,
    NoRepeatedCall: no_repeated_call,
    ToolsInOrder: tools_in_order,
    ToolsAnyOrder: tools_any_order,
    OutputMatches: output_matches,
    CostBelow: cost_below,
    LatencyBelow: latency_below,
}


def score(criterion: Any, trajectory: Trajectory) -> Score:
    """Score one deterministic criterion (not ``judge``: see :func:`judge.judge_score`)."""
    result: Score = SCORERS[type(criterion)](criterion, trajectory)
    return result
