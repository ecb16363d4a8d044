"""Budget and guardrail settings in workflow specs and agents: validation and how levels
combine (the tighter budget, the strictest PII action)."""

from __future__ import annotations

import pytest
from cadenza_workflow import (
    Budget,
    GuardrailPolicy,
    SpecValidationError,
    combine,
    parse_agent,
    parse_spec,
    tighter,
    workflow_json_schema,
)

pytestmark = pytest.mark.unit

TASKS = [{"id": "a", "tool": "transform"}]


def test_a_workflow_carries_a_budget_and_a_guardrail_policy() -> None:
    spec = parse_spec(
        {
            "name": "w",
            "tasks": TASKS,
            "budget": {"max_tokens": 5000, "max_usd": 0.5, "on_exceeded": "stop"},
            "guardrails": {"pii": {"action": "block", "entities": ["iban"]}},
        }
    )
    assert spec.budget == Budget(max_tokens=5000, max_usd=0.5)
    assert spec.guardrails is not None
    assert spec.guardrails.pii is not None
    assert spec.guardrails.pii.entities == ["iban"]
    assert {"budget", "guardrails"} <= set(workflow_json_schema()["properties"])


def test_bad_values_name_their_field() -> None:
    with pytest.raises(SpecValidationError) as bad:
        parse_spec({"name": "w", "tasks": TASKS, "budget": {"max_tokens": 0}})
    assert [e.field for e in bad.value.errors] == ["budget.max_tokens"]
    with pytest.raises(SpecValidationError) as bad_action:
        parse_spec({"name": "w", "tasks": TASKS, "guardrails": {"pii": {"action": "shout"}}})
    assert [e.field for e in bad_action.value.errors] == ["guardrails.pii.action"]
    agent = parse_agent(
        {
            "name": "a",
            "system_prompt": "s",
            "model": "local:m",
            "guardrails": {"pii": {"action": "redact"}},
        }
    )
    assert agent.guardrails is not None


def test_the_tighter_budget_wins_field_by_field() -> None:
    workflow = Budget(max_tokens=300, max_usd=1.0)
    request = Budget(max_usd=0.2)
    assert tighter(workflow, request) == Budget(max_tokens=300, max_usd=0.2)
    assert tighter(None, request) == request
    assert tighter(None, None) is None


def test_policies_combine_with_the_strictest_action() -> None:
    agent = GuardrailPolicy.model_validate({"pii": {"action": "flag", "entities": ["email"]}})
    flow = GuardrailPolicy.model_validate({"pii": {"action": "block", "entities": ["iban"]}})
    both = combine(agent, flow)
    assert both is not None
    assert both.pii is not None
    assert both.pii.action == "block"
    assert both.pii.entities == ["email", "iban"]
    assert combine(None, GuardrailPolicy()) is None
