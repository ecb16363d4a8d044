"""Bad specs: every problem is reported with its code, task, field and a useful message."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import pytest
from cadenza_workflow import (
    ErrorCode,
    SpecError,
    SpecValidationError,
    load_spec,
    parse_spec,
    topological_order,
)

pytestmark = pytest.mark.unit

KNOWN_TOOLS = {"transform", "http_request", "sleep", "flaky"}


@dataclass(frozen=True)
class Bad:
    name: str
    yaml: str
    code: str
    task: str | None
    field: str
    fragment: str
    known_tools: frozenset[str] | None = None


def wf(tasks: str, extra: str = "") -> str:
    """A workflow document with the given (dedented) tasks block and extra top-level YAML."""
    body = textwrap.indent(textwrap.dedent(tasks).strip(), "  ")
    return f"name: t\n{textwrap.dedent(extra).strip()}\ntasks:\n{body}\n"


CASES = [
    Bad(
        "cycle",
        wf(
            """
            - {id: a, tool: transform, needs: [c]}
            - {id: b, tool: transform, needs: [a]}
            - {id: c, tool: transform, needs: [b]}
            """
        ),
        "cycle",
        "a",
        "tasks[0].needs[0]",
        "a → b → c → a",
    ),
    Bad(
        "cycle through on_failure",
        wf(
            """
            - {id: a, tool: transform, needs: [f]}
            - {id: b, tool: transform, on_failure: f, needs: [a]}
            - {id: f, tool: transform, fallback: true}
            """
        ),
        "cycle",
        "a",
        "tasks[0].needs[0]",
        "a → b → f → a",
    ),
    Bad(
        "unknown need",
        wf(
            """
            - {id: fetch, tool: transform}
            - {id: report, tool: transform, needs: [fetch, fecth]}
            """
        ),
        "unknown_need",
        "report",
        "tasks[1].needs[1]",
        "needs unknown task 'fecth' (did you mean 'fetch'?)",
    ),
    Bad(
        "self dependency",
        wf("- {id: a, tool: transform, needs: [a]}"),
        "self_dependency",
        "a",
        "tasks[0].needs[0]",
        "task 'a' needs itself",
    ),
    Bad(
        "unreachable fallback",
        wf(
            """
            - {id: a, tool: transform}
            - {id: rescue, tool: transform, fallback: true}
            """
        ),
        "unreachable",
        "rescue",
        "tasks[1].fallback",
        "no task names it in on_failure",
    ),
    Bad(
        "unreachable through needs",
        wf(
            """
            - {id: a, tool: transform}
            - {id: rescue, tool: transform, fallback: true}
            - {id: after, tool: transform, needs: [a, rescue]}
            """
        ),
        "unreachable",
        "after",
        "tasks[2].needs[1]",
        "it needs 'rescue', which never runs",
    ),
    Bad(
        "duplicate id",
        wf(
            """
            - {id: a, tool: transform}
            - {id: a, tool: sleep}
            """
        ),
        "duplicate_id",
        "a",
        "tasks[1].id",
        "already used by tasks[0]",
    ),
    Bad(
        "expression syntax",
        wf(
            "- {id: a, tool: transform, when: 'inputs.amount >'}",
            "inputs: {amount: {type: number}}",
        ),
        "invalid_expression",
        "a",
        "tasks[0].when",
        "invalid syntax at the end",
    ),
    Bad(
        "expression imports",
        wf("- {id: a, tool: transform, with: {x: \"${{ __import__('os') }}\"}}"),
        "invalid_expression",
        "a",
        "tasks[0].with.x",
        "unknown function '__import__'",
    ),
    Bad(
        "dunder attribute",
        wf("- {id: a, tool: transform, with: {x: ['${{ inputs.__class__ }}']}}"),
        "invalid_expression",
        "a",
        "tasks[0].with.x[0]",
        "attribute '__class__' is not allowed",
    ),
    Bad(
        "unterminated template",
        wf("- {id: a, tool: transform, with: {x: 'hi ${{ inputs.n'}}"),
        "invalid_expression",
        "a",
        "tasks[0].with.x",
        "unterminated",
    ),
    Bad(
        "unknown name",
        wf("- {id: a, tool: transform, when: 'amount > 3'}"),
        "unknown_name",
        "a",
        "tasks[0].when",
        "uses unknown name 'amount' (available: inputs, run, tasks)",
    ),
    Bad(
        "item outside for_each",
        wf("- {id: a, tool: transform, with: {x: '${{ item.sku }}'}}"),
        "unknown_name",
        "a",
        "tasks[0].with.x",
        "uses 'item', which is only defined in a task with for_each",
    ),
    Bad(
        "item in for_each itself",
        wf("- {id: a, tool: transform, for_each: 'item.parts'}"),
        "unknown_name",
        "a",
        "tasks[0].for_each",
        "not defined in for_each itself",
    ),
    Bad(
        "non-ancestor reference",
        wf(
            """
            - {id: a, tool: transform}
            - {id: b, tool: transform}
            - {id: c, tool: transform, needs: [a], with: {v: '${{ tasks.b.output }}'}}
            """
        ),
        "invalid_reference",
        "c",
        "tasks[2].with.v",
        "'b' is not an ancestor of 'c'",
    ),
    Bad(
        "own result",
        wf("- {id: a, tool: transform, when: 'tasks.a.status == \"failed\"'}"),
        "invalid_reference",
        "a",
        "tasks[0].when",
        "own result",
    ),
    Bad(
        "unknown task in output",
        wf("- {id: a, tool: transform}", "output: '${{ tasks.nope.output }}'"),
        "invalid_reference",
        None,
        "output",
        "unknown task 'nope'",
    ),
    Bad(
        "unknown task field",
        wf("- {id: a, tool: transform}", "output: {v: '${{ tasks.a.result }}'}"),
        "invalid_expression",
        None,
        "output.v",
        "tasks.a has no field 'result'",
    ),
    Bad(
        "undeclared input",
        wf("- {id: a, tool: transform, with: {x: '${{ inputs.amont }}'}}", "inputs: {amount: {}}"),
        "unknown_input",
        "a",
        "tasks[0].with.x",
        "reads inputs.amont, but no such input is declared (did you mean 'amount'?)",
    ),
    Bad(
        "unknown task field name",
        wf("- {id: a, tool: transform, need: [b]}"),
        "unknown_field",
        "a",
        "tasks[0].need",
        "unknown field 'need' (did you mean 'needs'?)",
    ),
    Bad(
        "unknown top-level field",
        wf("- {id: a, tool: transform}", "ouptut: 1"),
        "unknown_field",
        None,
        "ouptut",
        "did you mean 'output'?",
    ),
    Bad(
        "unknown retry field",
        wf("- {id: a, tool: transform, retry: {max_attempt: 2}}"),
        "unknown_field",
        "a",
        "tasks[0].retry.max_attempt",
        "did you mean 'max_attempts'?",
    ),
    Bad(
        "missing tool",
        wf("- {id: a, kind: tool, with: {x: 1}}"),
        "missing_field",
        "a",
        "tasks[0].tool",
        "a kind=tool task needs 'tool'",
    ),
    Bad(
        "agent without agent",
        wf("- {id: a, kind: agent, prompt: hi}"),
        "missing_field",
        "a",
        "tasks[0].agent",
        "needs 'agent'",
    ),
    Bad(
        "prompt on a tool task",
        wf("- {id: a, tool: transform, prompt: hi}"),
        "invalid_field",
        "a",
        "tasks[0].prompt",
        "only valid for kind=agent",
    ),
    Bad(
        "missing id",
        wf("- {tool: transform}"),
        "missing_field",
        None,
        "tasks[0].id",
        "required field is missing",
    ),
    Bad(
        "bad id",
        wf("- {id: Fetch-1, tool: transform}"),
        "invalid_field",
        "Fetch-1",
        "tasks[0].id",
        "should match pattern",
    ),
    Bad(
        "bad timeout",
        wf("- {id: a, tool: transform, timeout_s: -1}"),
        "invalid_field",
        "a",
        "tasks[0].timeout_s",
        "greater than 0",
    ),
    Bad(
        "bad for_each type",
        wf("- {id: a, tool: transform, for_each: 5}"),
        "invalid_field",
        "a",
        "tasks[0].for_each",
        "should be a valid string or should be a valid list (got 5)",
    ),
    Bad(
        "on_failure not a fallback",
        wf(
            """
            - {id: a, tool: transform, on_failure: b}
            - {id: b, tool: transform}
            """
        ),
        "not_fallback",
        "a",
        "tasks[0].on_failure",
        "not marked fallback: true",
    ),
    Bad(
        "unknown on_failure",
        wf("- {id: a, tool: transform, on_failure: nope}"),
        "unknown_fallback",
        "a",
        "tasks[0].on_failure",
        "unknown task 'nope'",
    ),
    Bad(
        "fallback needs its trigger",
        wf(
            """
            - {id: a, tool: transform, on_failure: f}
            - {id: f, tool: transform, fallback: true, needs: [a]}
            """
        ),
        "invalid_field",
        "f",
        "tasks[1].needs[0]",
        "runs only when 'a' fails",
    ),
    Bad(
        "unknown tool",
        wf("- {id: a, tool: http_reqest}"),
        "unknown_tool",
        "a",
        "tasks[0].tool",
        "unknown tool 'http_reqest' (did you mean 'http_request'?)",
        frozenset(KNOWN_TOOLS),
    ),
    Bad(
        "bad default type",
        wf("- {id: a, tool: transform}", "inputs: {amount: {type: integer, default: 2.5}}"),
        "input_type",
        None,
        "inputs.amount.default",
        "must be an integer, got number 2.5",
    ),
    Bad(
        "required with a default",
        wf(
            "- {id: a, tool: transform}", "inputs: {n: {type: integer, default: 1, required: true}}"
        ),
        "invalid_field",
        None,
        "inputs.n.required",
        "has a default",
    ),
    Bad(
        "bad input name",
        wf("- {id: a, tool: transform}", "inputs: {'bad-name': {}}"),
        "invalid_field",
        None,
        "inputs['bad-name']",
        "should match pattern",
    ),
    Bad(
        "bad workflow name",
        "name: Not OK\ntasks: [{id: a, tool: transform}]",
        "invalid_field",
        None,
        "name",
        "should match pattern",
    ),
    Bad("no tasks", "name: t\ntasks: []", "invalid_field", None, "tasks", "at least 1 item"),
    Bad(
        "yaml syntax",
        "name: t\ntasks: [\n",
        "invalid_syntax",
        None,
        "",
        "YAML syntax error at line",
    ),
    Bad(
        "duplicate yaml key",
        "name: t\nname: u\ntasks: [{id: a, tool: transform}]",
        "invalid_syntax",
        None,
        "",
        "duplicate key 'name'",
    ),
    Bad("not a mapping", "- a\n- b\n", "invalid_syntax", None, "", "must be a mapping"),
]


def _errors(case: Bad) -> list[SpecError]:
    with pytest.raises(SpecValidationError) as info:
        load_spec(case.yaml, known_tools=case.known_tools)
    return info.value.errors


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_spec_is_reported(case: Bad) -> None:
    errors = _errors(case)
    matching = [e for e in errors if e.code == case.code and e.field == case.field]
    assert matching, f"no {case.code} at {case.field!r} in {[e.model_dump() for e in errors]}"
    error = matching[0]
    assert error.task == case.task
    assert case.fragment in error.message, error.message
    if case.task is not None:
        assert f"task '{case.task}'" in error.message
    if case.field:
        assert case.field in error.message


def test_all_problems_are_reported_at_once() -> None:
    text = wf(
        """
        - {id: a, tool: transform, needs: [ghost], when: 'nope'}
        - {id: a, tool: transform}
        - {id: b, kind: tool}
        - {id: c, tool: transform, with: {x: '${{ tasks.b.output }}'}}
        """
    )
    with pytest.raises(SpecValidationError) as info:
        load_spec(text)
    assert sorted(info.value.codes()) == [
        "duplicate_id",
        "invalid_reference",
        "missing_field",
        "unknown_name",
        "unknown_need",
    ]
    assert str(info.value).startswith("invalid workflow spec (5 problems):")


def test_one_cycle_error_per_cycle() -> None:
    text = wf(
        """
        - {id: a, tool: transform, needs: [b]}
        - {id: b, tool: transform, needs: [a]}
        - {id: c, tool: transform, needs: [d]}
        - {id: d, tool: transform, needs: [c, a]}
        """
    )
    with pytest.raises(SpecValidationError) as info:
        load_spec(text)
    cycles = [e for e in info.value.errors if e.code == ErrorCode.CYCLE]
    assert [e.message.split("cycle ")[1].split(" (")[0] for e in cycles] == [
        "a → b → a",
        "c → d → c",
    ]


def test_topological_order_and_cycle() -> None:
    spec = parse_spec(
        wf(
            """
            - {id: d, tool: transform, needs: [b, c]}
            - {id: b, tool: transform, needs: [a]}
            - {id: c, tool: transform, needs: [a], on_failure: f}
            - {id: a, tool: transform}
            - {id: f, tool: transform, fallback: true}
            """
        )
    )
    order = topological_order(spec)
    assert order == ["a", "b", "c", "d", "f"]
    cyclic = parse_spec(
        wf("- {id: a, tool: transform, needs: [b]}\n- {id: b, tool: transform, needs: [a]}")
    )
    with pytest.raises(SpecValidationError) as info:
        topological_order(cyclic)
    assert info.value.codes() == ["cycle"]


def test_error_serialises() -> None:
    with pytest.raises(SpecValidationError) as info:
        load_spec(wf("- {id: a, tool: transform, needs: [zz]}"))
    data = info.value.to_dict()
    assert data["code"] == "invalid_workflow"
    assert data["errors"] == [
        {
            "field": "tasks[0].needs[0]",
            "task": "a",
            "code": "unknown_need",
            "message": "task 'a', field tasks[0].needs[0]: needs unknown task 'zz'",
        }
    ]
