"""Agent definitions: parsing, validation errors naming the field, references, JSON Schema."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cadenza_workflow import (
    AgentSpec,
    AgentValidationError,
    SpecValidationError,
    agent_json_schema,
    format_agent_ref,
    load_agent,
    parse_agent,
    parse_agent_ref,
    parse_spec,
)
from jsonschema import Draft202012Validator

pytestmark = pytest.mark.unit

CLASSIFIER_YAML = """\
name: payment-classifier
description: Classifies payment failures
role: classifier
system_prompt: You classify payment failures.
model: local:smollm2-135m
temperature: 0.0
tools: [get_transaction, calculator]
max_iterations: 6
output_schema:
  type: object
  properties:
    category: {type: string, enum: [card, network, fraud]}
  required: [category]
budget: {max_tokens: 20000, max_usd: 0.5}
handoffs: [tier2-support]
"""
TOOLS = {"get_transaction", "calculator", "current_time"}


def errors_of(source: str | dict[str, Any], tools: set[str] | None = TOOLS) -> dict[str, str]:
    """field → code of every problem ``load_agent`` reports."""
    with pytest.raises(AgentValidationError) as info:
        load_agent(source, known_tools=tools)
    return {e.field: str(e.code) for e in info.value.errors}


def minimal(**fields: Any) -> dict[str, Any]:
    return {"name": "a", "system_prompt": "be brief", "model": "local:m", **fields}


def test_the_contract_example_parses_with_every_field() -> None:
    agent = load_agent(CLASSIFIER_YAML, "application/yaml", TOOLS)
    assert agent.name == "payment-classifier"
    assert agent.tools == ["get_transaction", "calculator"]
    assert agent.max_iterations == 6
    assert agent.budget is not None
    assert agent.budget.max_usd == 0.5
    assert agent.handoffs == ["tier2-support"]
    assert agent.output_schema is not None
    assert agent.output_schema["required"] == ["category"]


def test_stored_form_fills_defaults_and_omits_absent_optionals() -> None:
    stored = load_agent(minimal()).to_dict()
    assert stored == {
        "name": "a",
        "system_prompt": "be brief",
        "model": "local:m",
        "temperature": 0.0,
        "tools": [],
        "tool_choice": "auto",
        "max_iterations": 8,
        "handoffs": [],
    }
    assert AgentSpec.model_validate(stored) == load_agent(minimal())  # round-trips


def test_output_schema_nulls_survive_storage() -> None:
    schema = {"type": "object", "properties": {"x": {"default": None}}}
    assert load_agent(minimal(output_schema=schema)).to_dict()["output_schema"] == schema


def test_json_text_and_dicts_parse_like_yaml() -> None:
    as_json = json.dumps(minimal(tools=["calculator"]))
    assert parse_agent(as_json, "application/json") == parse_agent(minimal(tools=["calculator"]))
    assert parse_agent({**minimal(), "$schema": "https://x/agent.json"}).name == "a"


@pytest.mark.parametrize(
    ("model", "ok"),
    [
        ("local:smollm2-135m", True),
        ("openai:gpt-4o-mini", True),
        ("ollama:llama3:8b", True),  # the model part may itself contain ':'
        ("replay:meta-llama/Llama-3-8B", True),
        ("gpt-4o", False),
        ("local:", False),
        (":model", False),
        ("Local:model", False),
        ("local:two words", False),
    ],
)
def test_model_must_be_provider_colon_model(model: str, ok: bool) -> None:
    if ok:
        assert parse_agent(minimal(model=model)).model == model
        return
    with pytest.raises(AgentValidationError) as info:
        parse_agent(minimal(model=model))
    (error,) = info.value.errors
    assert error.field == "model"
    assert "must be 'provider:model'" in error.message


def test_shape_errors_name_each_field() -> None:
    errors = errors_of(
        {
            "name": "Bad Name",
            "model": "local:m",
            "temperature": 2.5,
            "max_iterations": 51,
            "tools": ["ok", "not ok"],
            "budget": {"max_tokens": 0, "max_tokns": 1},
            "handoffs": ["UPPER"],
            "temprature": 1,
        }
    )
    assert errors == {
        "name": "invalid_field",
        "system_prompt": "missing_field",
        "temperature": "invalid_field",
        "max_iterations": "invalid_field",
        "tools[1]": "invalid_field",
        "budget.max_tokens": "invalid_field",
        "budget.max_tokns": "unknown_field",
        "handoffs[0]": "invalid_field",
        "temprature": "unknown_field",
    }


def test_unknown_field_suggests_the_right_one() -> None:
    with pytest.raises(AgentValidationError) as info:
        parse_agent(minimal(sytem_prompt="x"))
    assert "did you mean 'system_prompt'?" in info.value.errors[0].message


def test_limits_on_prompt_and_iterations() -> None:
    assert errors_of(minimal(system_prompt="")) == {"system_prompt": "invalid_field"}
    assert errors_of(minimal(system_prompt="x" * 100_001)) == {"system_prompt": "invalid_field"}
    assert load_agent(minimal(system_prompt="x" * 100_000)).system_prompt
    assert errors_of(minimal(max_iterations=0)) == {"max_iterations": "invalid_field"}
    assert load_agent(minimal(max_iterations=50)).max_iterations == 50


def test_duplicate_tools_and_handoffs_and_self_handoff() -> None:
    errors = errors_of(minimal(tools=["calculator", "calculator"], handoffs=["b", "a", "b"]))
    assert errors == {
        "tools[1]": "invalid_field",
        "handoffs[2]": "invalid_field",
        "handoffs[1]": "self_dependency",
    }


def test_tool_choice_required_needs_something_to_call() -> None:
    assert errors_of(minimal(tool_choice="required")) == {"tool_choice": "invalid_field"}
    assert load_agent(minimal(tool_choice="required", tools=["calculator"])).tool_choice == (
        "required"
    )
    assert load_agent(minimal(tool_choice="required", handoffs=["b"])).tool_choice == "required"
    with pytest.raises(AgentValidationError) as info:
        load_agent(minimal(tool_choice="always"))
    assert info.value.errors[0].field == "tool_choice"


def test_unknown_tool_is_refused_only_when_the_known_set_is_given() -> None:
    with pytest.raises(AgentValidationError) as info:
        load_agent(minimal(tools=["calculater"]), known_tools=TOOLS)
    (error,) = info.value.errors
    assert (error.field, error.code) == ("tools[0]", "unknown_tool")
    assert "did you mean 'calculator'?" in error.message
    assert load_agent(minimal(tools=["calculater"])).tools == ["calculater"]


def test_output_schema_must_itself_be_a_valid_json_schema() -> None:
    bad = {"type": "object", "properties": {"x": {"type": "strin"}}, "required": "x"}
    errors = errors_of(minimal(output_schema=bad))
    assert set(errors) == {"output_schema.properties.x.type", "output_schema.required"}
    assert set(errors.values()) == {"invalid_field"}


def test_a_draft_07_output_schema_is_checked_against_its_own_dialect() -> None:
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}
    assert load_agent(minimal(output_schema=draft7)).output_schema == draft7


def test_errors_say_agent_not_workflow() -> None:
    with pytest.raises(AgentValidationError) as info:
        parse_agent("- just a list")
    assert str(info.value) == "invalid agent spec: agent: must be a mapping, got a list"
    assert info.value.to_dict()["code"] == "invalid_agent"
    assert isinstance(info.value, SpecValidationError)  # the gateway's problem machinery
    with pytest.raises(AgentValidationError) as info:
        parse_agent("name: [", "application/yaml")
    assert info.value.codes() == ["invalid_syntax"]
    assert info.value.errors[0].message.startswith("agent: YAML syntax error")


def test_agent_references() -> None:
    assert parse_agent_ref("payment-classifier") == ("payment-classifier", None)
    assert parse_agent_ref("payment-classifier@12") == ("payment-classifier", 12)
    assert format_agent_ref("x", 3) == "x@3"
    for bad in ["x@0", "x@", "X", "x@1@2", "x@-1", ""]:
        with pytest.raises(ValueError, match="not an agent reference"):
            parse_agent_ref(bad)


def test_json_schema_validates_the_example_and_documents_every_field() -> None:
    schema = agent_json_schema("https://api.example/v1/schemas/agent.json")
    Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://api.example/v1/schemas/agent.json"
    validator = Draft202012Validator(schema)
    good = load_agent(CLASSIFIER_YAML).to_dict()
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({**good, "model": "no-provider"}))
    assert list(validator.iter_errors({**good, "tools": ["a", "a"]}))
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name


def test_workflow_spec_accepts_an_agents_version_map() -> None:
    spec = parse_spec(
        {
            "name": "w",
            "agents": {"helper": 2},
            "tasks": [{"id": "ask", "agent": "helper@2", "prompt": "hi"}],
        }
    )
    assert spec.agents == {"helper": 2}
    assert spec.to_dict()["agents"] == {"helper": 2}
    assert "agents" not in parse_spec({"name": "w", "tasks": [{"id": "a"}]}).to_dict()
    with pytest.raises(SpecValidationError) as info:
        parse_spec({"name": "w", "agents": {"helper": 0}, "tasks": [{"id": "a"}]})
    assert info.value.errors[0].field == "agents.helper"
