"""Workflow specs shared by the orchestrator tests."""

from __future__ import annotations

from typing import Any

DIAMOND: dict[str, Any] = {
    "name": "diamond",
    "inputs": {"n": {"type": "integer", "default": 2}},
    "tasks": [
        {"id": "a", "tool": "transform", "with": {"v": "${{ inputs.n }}"}},
        {
            "id": "b",
            "tool": "transform",
            "needs": ["a"],
            "with": {"v": "${{ tasks.a.output.v * 10 }}"},
        },
        {
            "id": "c",
            "tool": "transform",
            "needs": ["a"],
            "with": {"v": "${{ tasks.a.output.v + 1 }}"},
        },
        {
            "id": "d",
            "tool": "transform",
            "needs": ["b", "c"],
            "with": {"sum": "${{ tasks.b.output.v + tasks.c.output.v }}", "run": "${{ run.id }}"},
        },
    ],
    "output": {"sum": "${{ tasks.d.output.sum }}", "text": "a=${{ tasks.a.output.v }}"},
}


FAN_OUT: dict[str, Any] = {
    "name": "fan",
    "inputs": {"count": {"type": "integer", "default": 100}},
    "tasks": [
        {
            "id": "prepare",
            "tool": "transform",
            "with": {"lines": "${{ list(range(inputs.count)) }}"},
        },
        {
            "id": "square",
            "tool": "transform",
            "needs": ["prepare"],
            "for_each": "tasks.prepare.output.lines",
            "with": {"index": "${{ index }}", "sq": "${{ item * item }}"},
        },
        {
            "id": "total",
            "tool": "transform",
            "needs": ["square"],
            "with": {
                "sum": "${{ sum(s.sq for s in tasks.square.output) }}",
                "first": "${{ tasks.square.output[0].index }}",
                "last": "${{ tasks.square.output[-1].index }}",
            },
        },
    ],
    "output": "${{ {'sum': tasks.total.output.sum, 'n': len(tasks.square.output)} }}",
}
