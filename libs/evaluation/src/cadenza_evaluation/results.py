"""Results of a suite: per case and agent version, the scores; a comparison of two versions
case by case (a regression = a criterion that passed on the baseline and fails now, or a
lower total credit); and a plain-text table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .scorers import Score


@dataclass
class CaseResult:
    case: str
    variant: str  # the agent version (or "default")
    run_id: str | None
    status: str  # the run's status, or "error"
    scores: list[Score] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(s.passed for s in self.scores)

    @property
    def credit(self) -> float:
        """Mean partial credit over the criteria (0 when the case could not run)."""
        if self.error is not None or not self.scores:
            return 0.0
        return sum(s.score for s in self.scores) / len(self.scores)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "variant": self.variant,
            "run_id": self.run_id,
            "status": self.status,
            "passed": self.passed,
            "credit": round(self.credit, 4),
            "scores": [s.as_dict() for s in self.scores],
            "error": self.error,
        }


@dataclass(frozen=True)
class Regression:
    case: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"case": self.case, "detail": self.detail}


def compare(baseline: list[CaseResult], candidate: list[CaseResult]) -> list[Regression]:
    """Case by case: what got worse from ``baseline`` to ``candidate``."""
    before = {r.case: r for r in baseline}
    regressions: list[Regression] = []
    for now in candidate:
        was = before.get(now.case)
        if was is None:
            continue
        lost = [
            s.criterion
            for s, t in zip(was.scores, now.scores, strict=False)
            if s.passed and not t.passed
        ]
        if was.error is None and now.error is not None:
            regressions.append(Regression(now.case, f"now fails to run: {now.error}"))
        elif lost:
            regressions.append(Regression(now.case, f"no longer passes: {', '.join(lost)}"))
        elif now.credit < was.credit - 1e-9:
            regressions.append(Regression(now.case, f"credit {was.credit:.2f} -> {now.credit:.2f}"))
    return regressions


def summary(results: list[CaseResult]) -> dict[str, Any]:
    return {
        "cases": len(results),
        "passed": sum(r.passed for r in results),
        "credit": round(sum(r.credit for r in results) / len(results), 4) if results else 0.0,
    }


RED, GREEN, RESET = "\x1b[31m", "\x1b[32m", "\x1b[0m"


def render_table(
    results: list[CaseResult], regressions: list[Regression], *, color: bool = False
) -> str:
    """One row per case and variant: pass/fail, credit, and each criterion's mark."""

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    regressed = {r.case for r in regressions}
    rows = [("case", "variant", "result", "credit", "criteria")]
    for r in results:
        marks = " ".join(f"{s.criterion}{'✓' if s.passed else '✗'}" for s in r.scores)
        result = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
        rows.append((r.case, r.variant, result, f"{r.credit:.2f}", r.error or marks))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[k].ljust(widths[k]) for k in range(4)]
        if i:
            cells[2] = paint(cells[2], GREEN if row[2] == "PASS" else RED)
        line = "  ".join([*cells, row[4]])
        lines.append(line)
    for reg in regressions:
        lines.append(paint(f"REGRESSION {reg.case}: {reg.detail}", RED))
    if regressions:
        lines.append(paint(f"{len(regressed)} case(s) regressed", RED))
    return "\n".join(lines)
