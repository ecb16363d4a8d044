"""Pure scorers of trajectory evaluation: pass/fail and partial credit."""

from __future__ import annotations

import pytest
from cadenza_evaluation import (
    CaseResult,
    Score,
    Step,
    SuiteError,
    Trajectory,
    compare,
    longest_common_subsequence,
    parse_suite,
    render_table,
    score,
    trajectory_from_timeline,
)

pytestmark = pytest.mark.unit


def llm(turn: int, tool_calls: int = 0, task: str = "a") -> Step:
    return Step("llm", task, turn, "local:m", None, "ok", tool_calls)


def tool(name: str, turn: int, args: str = "d1", task: str = "a") -> Step:
    return Step("tool", task, turn, name, args)


def trajectory(*steps: Step, output: object = None, cost: float = 0.0) -> Trajectory:
    return Trajectory("run1", "succeeded", list(steps), output, cost, 2.5)


def criteria(*items: dict[str, object]) -> list[object]:
    suite = parse_suite(
        "name: s\ncases:\n  - name: c\n    criteria: " + __import__("json").dumps(list(items))
    )
    return list(suite.cases[0].criteria)


def scored(item: dict[str, object], t: Trajectory) -> Score:
    (criterion,) = criteria(item)
    return score(criterion, t)


SEARCH_THEN_ANSWER = trajectory(
    llm(0, 1), tool("rag_search", 0), llm(1, 1), tool("get_fee", 1), llm(2)
)


def test_tool_called_before_the_answer() -> None:
    assert scored({"tool_called": "rag_search", "before": "answer"}, SEARCH_THEN_ANSWER).passed
    missing = scored({"tool_called": "lookup"}, SEARCH_THEN_ANSWER)
    assert (missing.passed, missing.score) == (False, 0.0)
    assert "rag_search" in missing.detail
    no_answer = trajectory(llm(0, 1), tool("rag_search", 0))
    late = scored({"tool_called": "rag_search", "before": "answer"}, no_answer)
    assert (late.passed, late.score) == (False, 0.5)


def test_max_steps_gives_partial_credit_for_efficiency() -> None:
    assert scored({"max_steps": 3}, SEARCH_THEN_ANSWER).passed
    over = scored({"max_steps": 2}, SEARCH_THEN_ANSWER)
    assert not over.passed
    assert over.score == pytest.approx(2 / 3)


def test_no_repeated_call_compares_tool_and_arguments() -> None:
    same_args = trajectory(llm(0, 1), tool("get", 0, "x"), llm(1, 1), tool("get", 1, "x"), llm(2))
    other_args = trajectory(llm(0, 1), tool("get", 0, "x"), llm(1, 1), tool("get", 1, "y"), llm(2))
    repeated = scored({"no_repeated_call": True}, same_args)
    assert (repeated.passed, repeated.score) == (False, 0.5)
    assert "get x2" in repeated.detail
    assert scored({"no_repeated_call": True}, other_args).passed


def test_tools_in_order_credits_the_longest_matching_subsequence() -> None:
    assert longest_common_subsequence(["a", "b", "c"], ["a", "x", "c", "b"]) == 2
    assert scored({"tools_in_order": ["rag_search", "get_fee"]}, SEARCH_THEN_ANSWER).passed
    reversed_ = scored({"tools_in_order": ["get_fee", "rag_search", "x"]}, SEARCH_THEN_ANSWER)
    assert not reversed_.passed
    assert reversed_.score == pytest.approx(1 / 3)


def test_tools_any_order_credits_the_share_called() -> None:
    assert scored({"tools_any_order": ["get_fee", "rag_search"]}, SEARCH_THEN_ANSWER).passed
    half = scored({"tools_any_order": ["get_fee", "refund"]}, SEARCH_THEN_ANSWER)
    assert (half.passed, half.score) == (False, 0.5)
    assert "missing: refund" in half.detail


def test_criteria_can_be_restricted_to_tasks() -> None:
    two_tasks = trajectory(llm(0, 1, "a"), tool("x", 0, task="a"), llm(0, 0, "b"))
    assert not scored({"tool_called": "x", "tasks": ["b"]}, two_tasks).passed
    assert scored({"max_steps": 1, "tasks": ["b"]}, two_tasks).passed


def test_output_matches_a_schema_or_an_expression() -> None:
    t = trajectory(output={"category": "fraud", "confidence": 0.4})
    schema = {
        "type": "object",
        "required": ["category"],
        "properties": {"confidence": {"minimum": 0.5}},
    }
    bad = scored({"output_matches": {"schema": schema}}, t)
    assert not bad.passed
    assert "confidence" in bad.detail
    assert scored({"output_matches": {"expression": "output.category == 'fraud'"}}, t).passed
    assert not scored({"output_matches": {"expression": "output.confidence > 0.5"}}, t).passed
    broken = scored({"output_matches": {"expression": "output.nope"}}, t)
    assert not broken.passed
    assert "expression failed" in broken.detail


def test_cost_and_latency_limits() -> None:
    t = trajectory(cost=0.02)
    assert not scored({"cost_usd_below": 0.01}, t).passed
    assert scored({"cost_usd_below": 0.05}, t).passed
    assert scored({"latency_below": 3}, t).passed
    assert not scored({"latency_below": 2}, t).passed


def test_bad_suites_name_the_field() -> None:
    with pytest.raises(SuiteError, match="cases"):
        parse_suite("name: s\ncases: []\n", "suite.yaml")
    with pytest.raises(SuiteError, match=r"suite.yaml: invalid suite"):
        parse_suite("name: s\ncases:\n  - name: c\n    criteria: [{max_steps: 0}]\n", "suite.yaml")
    with pytest.raises(SuiteError, match="exactly one"):
        parse_suite(
            "name: s\ncases:\n  - name: c\n    criteria: [{output_matches: {}}]\n", "suite.yaml"
        )


def test_compare_flags_lost_criteria_and_lower_credit() -> None:
    def result(case: str, *marks: tuple[bool, float]) -> CaseResult:
        return CaseResult(
            case,
            "v",
            "r",
            "succeeded",
            [Score(f"c{i}", p, s, "") for i, (p, s) in enumerate(marks)],
        )

    baseline = [
        result("one", (True, 1.0)),
        result("two", (False, 0.5)),
        result("three", (True, 1.0)),
    ]
    candidate = [
        result("one", (False, 0.2)),
        result("two", (False, 0.25)),
        result("three", (True, 1.0)),
    ]
    regressions = compare(baseline, candidate)
    assert [(r.case, r.detail) for r in regressions] == [
        ("one", "no longer passes: c0"),
        ("two", "credit 0.50 -> 0.25"),
    ]
    table = render_table([*baseline, *candidate], regressions)
    assert "REGRESSION one" in table
    assert "2 case(s) regressed" in table
    assert compare(candidate, baseline) == []


def test_trajectory_from_the_gateway_timeline() -> None:
    run = {
        "id": "r1",
        "status": "succeeded",
        "output": {"x": 1},
        "created_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:04+00:00",
    }
    timeline = {
        "totals": {"cost_usd": 0.5},
        "tasks": [
            {
                "node_id": "late",
                "offset_ms": 10.0,
                "llm_calls": [{"attempt": 1, "turn": 0, "model": "m", "status": "ok"}],
                "tool_calls": [],
            },
            {
                "node_id": "early",
                "offset_ms": 1.0,
                "llm_calls": [
                    {"attempt": 1, "turn": 1, "model": "m", "status": "ok"},
                    {"attempt": 1, "turn": 0, "model": "m", "status": "ok"},
                ],
                "tool_calls": [
                    {"attempt": 1, "turn": 0, "call_index": 1, "tool": "b", "status": "ok"},
                    {"attempt": 1, "turn": 0, "call_index": 0, "tool": "a", "status": "ok"},
                ],
            },
        ],
    }
    t = trajectory_from_timeline(run, timeline)
    assert [(s.kind, s.task, s.name) for s in t.steps] == [
        ("llm", "early", "m"),
        ("tool", "early", "a"),
        ("tool", "early", "b"),
        ("llm", "early", "m"),
        ("llm", "late", "m"),
    ]
    assert t.steps[0].tool_calls == 2
    assert (t.cost_usd, t.latency_s, t.output) == (0.5, 4.0, {"x": 1})
