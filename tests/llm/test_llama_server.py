"""The ``openai_compatible`` provider against a real OpenAI-compatible server: llama.cpp's
HTTP server over the embedded model (see support/llama.py). Outputs are tiny (a few tokens)
so the whole module takes seconds; what is asserted is the wire behaviour, not the wit of a
135M model."""

from __future__ import annotations

import json

import pytest
from cadenza_llm import ChatRequest, ToolSpec
from cadenza_llm.llama_server import LlamaServer
from support.llama import llama_provider

pytestmark = pytest.mark.integration

FEE = ToolSpec(
    name="get_fee",
    description="The fee of a transaction.",
    parameters={
        "type": "object",
        "properties": {"id": {"type": "string", "maxLength": 12}},
        "required": ["id"],
    },
)
QUESTION = [{"role": "user", "content": "What is the fee of transaction tx_1?"}]


async def test_tools_reach_the_prompt_and_tool_calls_come_back_parsed(
    llama_server: LlamaServer,
) -> None:
    provider = llama_provider(llama_server)
    try:
        bare = await provider.chat(ChatRequest(model="m", messages=QUESTION, max_tokens=1))
        offered = await provider.chat(
            ChatRequest(model="m", messages=QUESTION, tools=[FEE], max_tokens=1)
        )
        # With the model's own template llama.cpp drops `tools`; the shipped one renders them.
        assert offered.usage.input_tokens > bare.usage.input_tokens + 40
        # A 135M model does not start a tool call by itself (and llama.cpp does not enforce
        # `tool_choice: required`), so the turn is begun for it (an assistant prefix the server
        # continues) and the model closes it: the server parses the <tool_call> block of the
        # shipped template into an OpenAI tool call, which the provider turns into a ToolCall.
        # (More tokens and the model chats on after the block, which llama.cpp refuses.)
        prefix = '<tool_call>\n{"name": "get_fee", "arguments": {"id": "tx_1"'
        response = await provider.chat(
            ChatRequest(
                model="m",
                messages=[*QUESTION, {"role": "assistant", "content": prefix}],
                tools=[FEE],
                max_tokens=3,
            )
        )
    finally:
        await provider.aclose()
    assert [(c.name, c.arguments) for c in response.tool_calls] == [("get_fee", {"id": "tx_1"})]
    assert response.tool_calls[0].id


async def test_structured_output_matches_the_schema(llama_server: LlamaServer) -> None:
    schema = {
        "type": "object",
        "properties": {"fee": {"type": "number"}},
        "required": ["fee"],
        "additionalProperties": False,
    }
    provider = llama_provider(llama_server)
    try:
        response = await provider.chat(
            ChatRequest(model="m", messages=QUESTION, response_schema=schema, max_tokens=24)
        )
    finally:
        await provider.aclose()
    value = json.loads(response.content or "")
    assert set(value) == {"fee"}
    assert isinstance(value["fee"], int | float)


async def test_streaming_assembles_the_answer_and_the_usage(llama_server: LlamaServer) -> None:
    provider = llama_provider(llama_server, stream=True)
    plain = llama_provider(llama_server)
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_fee", "arguments": '{"id": "tx_1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"fee": 2.5}'},
    ]
    request = ChatRequest(model="m", messages=history, tools=[FEE], max_tokens=8, seed=1)
    try:
        streamed = await provider.chat(request)
        whole = await plain.chat(request)
    finally:
        await provider.aclose()
        await plain.aclose()
    # A conversation with a tool call and its result renders; the streamed chunks add up to
    # the same answer as the non-streamed call (temperature 0), with usage from the last chunk.
    assert streamed.content
    assert streamed.content == whole.content
    assert streamed.usage.output_tokens == whole.usage.output_tokens > 0
    assert streamed.usage.input_tokens == whole.usage.input_tokens > 0
