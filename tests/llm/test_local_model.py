"""The real embedded model (SmolLM2-135M on llama.cpp, in process, CPU only). Asserts shape —
valid JSON, valid tool calls — never the model's judgement."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from cadenza_llm import (
    ChatRequest,
    LLMSettings,
    ProviderRegistry,
    ToolSpec,
    assistant_message,
    tool_message,
)

pytestmark = pytest.mark.integration

CLASSIFICATION = {
    "type": "object",
    "properties": {
        "category": {"enum": ["card_declined", "insufficient_funds", "fraud", "other"]},
        "confidence": {"type": "number"},
    },
    "required": ["category", "confidence"],
}
GET_TRANSACTION = ToolSpec(
    name="get_transaction",
    description="Fetch a payment transaction by its id",
    parameters={
        "type": "object",
        "properties": {"transaction_id": {"type": "string", "maxLength": 12}},
        "required": ["transaction_id"],
    },
)
CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 16}},
        "required": ["expression"],
    },
)


async def test_structured_output_is_valid_against_the_schema(tmp_path: Path) -> None:
    registry = ProviderRegistry(LLMSettings(cassette_mode="record", cassette_path=tmp_path))
    provider, model = registry.resolve("local:smollm2-135m")
    request = ChatRequest(
        model=model,
        messages=[
            {"role": "system", "content": "You classify payment failures."},
            {"role": "user", "content": "The issuer declined the card."},
        ],
        response_schema=CLASSIFICATION,
        max_tokens=48,
    )
    response = await provider.chat(request)
    assert response.provider == "local"
    assert response.model == "smollm2-135m"
    assert response.tool_calls == []
    jsonschema.validate(json.loads(response.content or ""), CLASSIFICATION)
    assert response.usage.input_tokens > 0
    assert 0 < response.usage.output_tokens <= 48
    assert registry.cost(response.provider, response.model, response.usage) == 0.0

    # what was recorded replays exactly, without the model
    replaying = ProviderRegistry(LLMSettings(cassette_mode="replay", cassette_path=tmp_path))
    replay, model = replaying.resolve("local:smollm2-135m")
    assert await replay.chat(request) == response


async def test_tool_offering_request_yields_a_valid_call_and_sees_its_result() -> None:
    registry = ProviderRegistry(LLMSettings())
    provider, model = registry.resolve("local:smollm2-135m")
    tools = [GET_TRANSACTION, CALCULATOR]
    messages = [
        {"role": "system", "content": "You investigate payment failures."},
        {"role": "user", "content": "Look up transaction tx_42."},
    ]
    first = await provider.chat(
        ChatRequest(
            model=model, messages=messages, tools=tools, tool_choice="required", max_tokens=64
        )
    )
    assert first.content is None
    assert first.finish_reason == "tool_calls"
    [call] = first.tool_calls
    assert call.id == "call_1"
    spec = {t.name: t for t in tools}[call.name]
    jsonschema.validate(call.arguments, spec.parameters)

    # the tool's result goes back; the model answers or calls again, in a valid shape
    messages += [assistant_message(first), tool_message(call, '{"status": "declined"}')]
    second = await provider.chat(
        ChatRequest(model=model, messages=messages, tools=tools, max_tokens=64)
    )
    if second.tool_calls:
        assert second.tool_calls[0].id == "call_2"
        again = {t.name: t for t in tools}[second.tool_calls[0].name]
        jsonschema.validate(second.tool_calls[0].arguments, again.parameters)
    else:
        assert isinstance(second.content, str)
        assert second.content
