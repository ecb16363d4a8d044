"""The ``judge`` criterion: a configured model scores the output against a rubric (0-10).
The embedded model (``local:smollm2-135m``, the default) works offline; with cassettes
(``CADENZA_LLM_CASSETTE_MODE=replay``) the judge's answers replay too."""

from __future__ import annotations

import json
from typing import Any

from cadenza_llm import ChatRequest, Provider

from .scorers import Score
from .suite import Judge
from .trajectory import Trajectory

VERDICT = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["score", "reason"],
    "additionalProperties": False,
}


def judge_request(criterion: Judge, trajectory: Trajectory, model: str) -> ChatRequest:
    output = json.dumps(trajectory.output, sort_keys=True, default=str)[:4000]
    return ChatRequest(
        model=model,
        messages=[
            {
                "role": "system",
                "content": "You grade the output of an AI agent against a rubric. "
                "Reply with JSON: a score from 0 (fails the rubric) to 10 (fully meets it) "
                "and a one-sentence reason.",
            },
            {"role": "user", "content": f"Rubric: {criterion.judge.rubric}\nOutput: {output}"},
        ],
        response_schema=VERDICT,
        max_tokens=96,
        seed=0,
    )


async def judge_score(
    criterion: Judge, trajectory: Trajectory, provider: Provider, model: str
) -> Score:
    try:
        response = await provider.chat(judge_request(criterion, trajectory, model))
        verdict: dict[str, Any] = json.loads(response.content or "")
        value = int(verdict["score"])
    except Exception as exc:  # a judge that fails is a failed criterion, not a crash
        return Score("judge", False, 0.0, f"judge failed: {type(exc).__name__}: {exc}"[:300])
    passed = value >= criterion.judge.min_score
    reason = str(verdict.get("reason", ""))[:200]
    return Score(
        "judge", passed, value / 10, f"{value}/10 (min {criterion.judge.min_score}): {reason}"
    )
