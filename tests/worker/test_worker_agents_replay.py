"""Agent loops on the replay provider: responses recorded from the embedded model
(`local:smollm2-135m`) into tests/worker/cassettes/agents.json, replayed exactly.

Re-record (needs no network; the model ships in a package):
    CADENZA_TEST_LLM=record uv run pytest tests/worker/test_worker_agents_replay.py
A request that is not in the cassette fails the test (CassetteMissError), never a made-up
answer — so a change to prompts, tools or the loop shows up here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
from agent_support import llm_rows, register_agent, tool_rows
from cadenza_llm import LLMSettings, ProviderRegistry
from cadenza_worker import builtin_tools
from worker_support import Stack

CASSETTE = Path(__file__).parent / "cassettes" / "agents.json"
MODE = "record" if os.environ.get("CADENZA_TEST_LLM") == "record" else "replay"

CLASSIFICATION = {
    "type": "object",
    "properties": {
        "category": {
            "type": "string",
            "enum": ["insufficient_funds", "psp_outage", "routing_error", "fraud_suspected"],
        },
        "confidence": {"type": "number"},
    },
    "required": ["category", "confidence"],
}


def registry(mode: str = MODE) -> ProviderRegistry:
    return ProviderRegistry(LLMSettings(cassette_mode=mode, cassette_path=CASSETTE))


async def run_agent(stack: Stack, ref: str, prompt: str) -> tuple[object, str]:
    task = await stack.add_task(ref, {"prompt": prompt}, kind="agent", timeout_s=600)
    await stack.dispatch(task)
    result = await stack.result(task, timeout=600)
    assert result.status == "succeeded", result.error
    return result.output, task.task_id


async def test_a_tool_using_loop_replays_exactly(stack: Stack) -> None:
    ref = await register_agent(
        stack,
        name="calc",
        system_prompt="You are a calculator assistant. Use the calculator tool for arithmetic.",
        model="local:smollm2-135m",
        tools=["calculator"],
        max_iterations=3,
    )
    await stack.start_worker(tools=builtin_tools(stack.settings()), llm=registry())
    output, task_id = await run_agent(stack, ref, "What is 17 * 3?")

    assert isinstance(output, str)
    assert output
    calls = await llm_rows(stack, task_id)
    assert [c.turn for c in calls] == list(range(len(calls)))
    assert all(c.provider == "local" and c.model == "smollm2-135m" for c in calls)
    assert all(c.input_tokens > 0 and c.output_tokens > 0 for c in calls)
    assert all(c.cost_usd == 0 for c in calls)  # the embedded model is free
    tools = await tool_rows(stack, task_id)
    asked = [call["name"] for c in calls for call in c.tool_calls or []]
    assert [t.tool for t in tools] == asked
    assert set(asked) <= {"calculator"}
    assert len(asked) >= 1  # the recorded loop did use its tool
    if MODE == "replay":  # what the cassette says the model did
        recorded = json.loads(CASSETTE.read_text())
        assert len(recorded["entries"]) >= len(calls)


async def test_structured_output_from_the_embedded_model_matches_the_schema(
    stack: Stack,
) -> None:
    ref = await register_agent(
        stack,
        name="classifier",
        system_prompt="You classify payment failures.",
        model="local:smollm2-135m",
        tools=[],
        max_iterations=2,
        output_schema=CLASSIFICATION,
    )
    await stack.start_worker(tools=builtin_tools(stack.settings()), llm=registry())
    output, task_id = await run_agent(
        stack, ref, "Card payment failed: 'Insufficient funds in account'. Classify it."
    )
    jsonschema.validate(output, CLASSIFICATION)
    (call,) = await llm_rows(stack, task_id)
    assert call.request["response_schema"] == CLASSIFICATION


async def test_a_request_missing_from_the_cassette_fails_the_task(stack: Stack) -> None:
    ref = await register_agent(
        stack, name="calc", model="local:smollm2-135m", tools=[], system_prompt="Unrecorded."
    )
    # Always replay here (even while re-recording the others): the point is the miss.
    registry_ = registry("replay")
    await stack.start_worker(tools=builtin_tools(stack.settings()), llm=registry_)
    task = await stack.add_task(ref, {"prompt": "never recorded"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "cassette_miss"
