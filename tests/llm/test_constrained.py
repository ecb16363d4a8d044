"""The constrained-decoding tool protocol of the local provider, without running the model."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cadenza_llm import (
    BadRequestError,
    ChatRequest,
    InvalidOutputError,
    LLMSettings,
    LocalProvider,
    ProviderUnavailableError,
    ToolCall,
    ToolSpec,
    assistant_message,
    tool_message,
)
from cadenza_llm.constrained import (
    cap_strings,
    parse_protocol_output,
    protocol_schema,
    render_messages,
    uses_protocol,
)
from cadenza_llm.local import engine_for
from cadenza_llm.types import ChatResponse

pytestmark = pytest.mark.unit

LOOKUP = ToolSpec(
    name="get_transaction",
    description="Fetch a transaction",
    parameters={
        "type": "object",
        "properties": {"id": {"type": "string"}, "filter": {"$ref": "#/$defs/Filter"}},
        "required": ["id"],
        "$defs": {
            "Filter": {"type": "object", "properties": {"status": {"enum": ["ok", "failed"]}}}
        },
    },
)
CALC = ToolSpec(
    name="calculator",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
)
ANSWER = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


def request(**extra: Any) -> ChatRequest:
    values: dict[str, Any] = {
        "model": "smollm2-135m",
        "messages": [
            {"role": "system", "content": "You are careful."},
            {"role": "user", "content": "Check tx_1"},
        ],
        "tools": [LOOKUP, CALC],
    }
    values.update(extra)
    return ChatRequest.model_validate(values)


def valid(schema: dict[str, Any], instance: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


def test_schema_accepts_each_tool_call_and_a_final_answer() -> None:
    schema = protocol_schema(request())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert valid(schema, {"tool": "get_transaction", "arguments": {"id": "tx_1"}})
    assert valid(
        schema,
        {"tool": "get_transaction", "arguments": {"id": "tx_1", "filter": {"status": "ok"}}},
    )
    assert valid(schema, {"tool": "calculator", "arguments": {"expression": "1+1"}})
    assert valid(schema, {"final": "done"})
    # arguments must satisfy THAT tool's schema; nested $refs still resolve
    assert not valid(schema, {"tool": "calculator", "arguments": {"id": "tx_1"}})
    assert not valid(
        schema, {"tool": "get_transaction", "arguments": {"id": "t", "filter": {"status": "?"}}}
    )
    assert not valid(schema, {"tool": "rm_rf", "arguments": {}})
    assert not valid(schema, {"final": "x", "tool": "calculator"})


def test_required_has_no_final_branch_and_schema_shapes_final() -> None:
    required = protocol_schema(request(tool_choice="required"))
    assert not valid(required, {"final": "done"})
    assert valid(required, {"tool": "calculator", "arguments": {"expression": "2"}})
    structured = protocol_schema(request(response_schema=ANSWER))
    assert valid(structured, {"final": {"label": "fraud"}})
    assert not valid(structured, {"final": "fraud"})


def test_strings_are_capped_unless_bounded_already() -> None:
    schema = {
        "type": "object",
        "properties": {
            "free": {"type": "string"},
            "short": {"type": "string", "maxLength": 5},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "maybe": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "$defs": {"X": {"type": "string"}},
    }
    capped = cap_strings(schema, 10)
    props = capped["properties"]
    assert props["free"]["maxLength"] == 10
    assert props["short"]["maxLength"] == 5
    assert "maxLength" not in props["kind"]
    assert props["maybe"]["maxLength"] == 10
    assert props["tags"]["items"]["maxLength"] == 10
    assert capped["$defs"]["X"]["maxLength"] == 10
    assert "maxLength" not in schema["properties"]["free"]  # the caller's schema is untouched
    assert cap_strings(schema, None) is schema
    protocol = protocol_schema(request(), 10)
    assert not valid(protocol, {"tool": "calculator", "arguments": {"expression": "x" * 11}})
    assert valid(protocol, {"final": "a free-text answer longer than ten characters"})


def test_protocol_only_when_tools_may_be_called() -> None:
    assert uses_protocol(request())
    assert not uses_protocol(request(tool_choice="none"))
    assert not uses_protocol(request(tools=[]))


def test_render_puts_protocol_in_system_prompt_and_tool_turns_in_user_messages() -> None:
    first = request()
    call = ToolCall(id="call_1", name="get_transaction", arguments={"id": "tx_1"})
    reply = ChatResponse(content=None, tool_calls=[call], model="m", provider="local")
    later = request(
        messages=[
            *first.messages,
            assistant_message(reply),
            tool_message(call, '{"status": "failed"}'),
        ]
    )
    rendered = render_messages(later, protocol=True)
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    system = rendered[0]["content"]
    assert system.startswith("You are careful.")
    assert "- get_transaction: Fetch a transaction" in system
    assert '{"tool": "<tool name>", "arguments": {...}}' in system
    assert '{"final": <text>}' in system
    assert json.loads(rendered[2]["content"]) == {
        "tool": "get_transaction",
        "arguments": {"id": "tx_1"},
    }
    assert rendered[3]["content"] == 'Tool get_transaction returned: {"status": "failed"}'


def test_render_without_system_message_adds_one_and_names_tools_by_call_id() -> None:
    later = request(
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c9",
                        "function": {"name": "calculator", "arguments": '{"expression":"2"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c9", "content": "2"},
            {"role": "assistant", "content": "It is 2."},
        ]
    )
    rendered = render_messages(later, protocol=True)
    assert rendered[0]["role"] == "system"
    assert rendered[3]["content"] == "Tool calculator returned: 2"
    assert json.loads(rendered[4]["content"]) == {"final": "It is 2."}
    plain = render_messages(later, protocol=False)
    assert plain[0] == {"role": "user", "content": "hi"}
    assert plain[-1] == {"role": "assistant", "content": "It is 2."}


def test_parse_tool_call_ids_count_previous_calls() -> None:
    earlier = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "function": {"name": "calculator", "arguments": "{}"}}],
    }
    req = request(messages=[{"role": "user", "content": "x"}, earlier])
    content, calls = parse_protocol_output(
        '{"tool": "calculator", "arguments": {"expression": "1+2"}}', req, "stop"
    )
    assert content is None
    assert calls == [ToolCall(id="call_2", name="calculator", arguments={"expression": "1+2"})]


def test_parse_final_plain_and_structured() -> None:
    assert parse_protocol_output('{"final": "done"}', request(), "stop") == ("done", [])
    content, calls = parse_protocol_output(
        '{"final": {"label": "fraud"}}', request(response_schema=ANSWER), "stop"
    )
    assert json.loads(content or "") == {"label": "fraud"}
    assert calls == []


def test_free_text_answer_cut_off_at_max_tokens_keeps_the_text_so_far() -> None:
    cut = '{\n  "final": "The transaction failed because the card \\"'
    assert parse_protocol_output(cut, request(), "length") == (
        'The transaction failed because the card "',
        [],
    )
    assert parse_protocol_output('{"final": "half an esc\\u00', request(), "length") == (
        "half an esc",
        [],
    )
    # a structured answer cut off cannot be salvaged
    with pytest.raises(InvalidOutputError):
        parse_protocol_output('{"final": {"label": "fr', request(response_schema=ANSWER), "length")


def test_cut_off_output_is_invalid_with_a_hint() -> None:
    with pytest.raises(InvalidOutputError, match="raise max_tokens") as caught:
        parse_protocol_output('{"tool": "calc', request(), "length")
    assert caught.value.code == "llm_invalid_output"
    with pytest.raises(InvalidOutputError, match="no protocol branch"):
        parse_protocol_output('{"other": 1}', request(), "stop")


def test_local_payload_constrains_output() -> None:
    provider = LocalProvider(LLMSettings(local_max_tokens=99))
    payload = provider._payload(request(), protocol=True)
    assert payload["max_tokens"] == 99
    assert payload["response_format"]["json_schema"]["schema"] == protocol_schema(request(), 128)
    plain = provider._payload(
        request(tools=[], response_schema=ANSWER, max_tokens=5, seed=3), False
    )
    assert plain["response_format"]["json_schema"]["schema"] == cap_strings(ANSWER, 128)
    assert (plain["max_tokens"], plain["seed"]) == (5, 3)
    assert "response_format" not in provider._payload(request(tools=[]), protocol=False)


def test_local_engine_errors_map_to_typed_errors() -> None:
    provider = LocalProvider()
    too_long = {"error": {"code": 400, "message": "request (9000 tokens) exceeds the context"}}
    with pytest.raises(BadRequestError, match="exceeds the context"):
        provider._to_response(request(), True, too_long, 0.0)
    with pytest.raises(ProviderUnavailableError):
        provider._to_response(request(), True, {"error": {"code": 500, "message": "x"}}, 0.0)


def test_local_response_translation() -> None:
    provider = LocalProvider()
    result = {
        "choices": [
            {
                "message": {
                    "content": '{\n "tool": "calculator", "arguments": {"expression": "3"}}'
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9},
        "model": "/some/machine/path.gguf",
    }
    response = provider._to_response(request(), True, result, 0.0)
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls[0].name == "calculator"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (50, 9)
    assert response.raw is not None
    assert response.raw["model"] == "smollm2-135m"
    structured = {**result, "choices": [{"message": {"content": '{\n  "label" : "x"\n}'}}]}
    response = provider._to_response(
        request(tools=[], response_schema=ANSWER), False, structured, 0
    )
    assert response.content == '{"label": "x"}'


class FakeServer:
    """Stands in for xllamacpp.Server: records the thread and overlap of each call."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.threads: set[str] = set()

    def handle_chat_completions(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload["messages"] == "bad":
            raise ValueError("Expected 'messages' to be an array")
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for calls to overlap if they were not serialised
        self.active -= 1
        return {
            "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }


async def test_local_engine_is_shared_and_serialises_calls(tmp_path: Path) -> None:
    model = tmp_path / "fake.gguf"
    model.write_bytes(b"GGUF")
    settings = LLMSettings(local_models={"fake": model}, local_context_tokens=1024)
    engine = engine_for(model, settings.local_threads, 1024)
    assert engine_for(model, settings.local_threads, 1024) is engine
    server = FakeServer()
    engine._server = server  # skip loading a real model
    provider = LocalProvider(settings)
    assert provider.available_models()["fake"] == model
    ask = ChatRequest(model="fake", messages=[{"role": "user", "content": "hi"}])
    responses = await asyncio.gather(*(provider.chat(ask) for _ in range(5)))
    assert [r.content for r in responses] == ["ok"] * 5
    assert server.max_active == 1
    assert len(server.threads) == 1
    assert next(iter(server.threads)).startswith("cadenza-llm-local")
    with pytest.raises(BadRequestError, match="array"):
        engine.complete({"messages": "bad"})
