"""Trajectory evaluation: suites (YAML) of cases and criteria, pure scorers over a run's
agent steps and output, a model judge, comparison of two agent versions, OTel events."""

from .judge import judge_score
from .results import CaseResult, Regression, compare, render_table, summary
from .scorers import Score, longest_common_subsequence, score
from .suite import Case, Judge, Suite, SuiteError, criterion_name, load_suite, parse_suite
from .telemetry import emit_results
from .trajectory import Step, Trajectory, arguments_digest, trajectory_from_timeline

__all__ = [
    "Case",
    "CaseResult",
    "Judge",
    "Regression",
    "Score",
    "Step",
    "Suite",
    "SuiteError",
    "Trajectory",
    "arguments_digest",
    "compare",
    "criterion_name",
    "emit_results",
    "judge_score",
    "load_suite",
    "longest_common_subsequence",
    "parse_suite",
    "render_table",
    "score",
    "summary",
    "trajectory_from_timeline",
]
