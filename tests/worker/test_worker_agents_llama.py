"""The agent loop against a real OpenAI-compatible server (llama.cpp over the embedded model).

llama.cpp ignores `tool_choice: required`, and with `response_format` on a tool turn it
answered the schema at once (`{"fee": 1.0}`) — a wrong answer that "succeeded". Now the schema
is not sent on tool turns and an answer without the required tool call is asked again, then
the task fails clearly."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from agent_support import EchoTool, llm_rows, register_agent
from cadenza_llm import OpenAICompatibleProvider, PriceTable
from cadenza_llm.llama_server import LlamaServer
from cadenza_worker import ToolRegistry
from support.llama import llama_provider
from worker_support import Stack

pytestmark = pytest.mark.integration


@dataclass
class LlamaRegistry:
    provider: OpenAICompatibleProvider
    prices: PriceTable = field(default_factory=PriceTable)

    def resolve(self, ref: str) -> tuple[OpenAICompatibleProvider, str]:
        return self.provider, ref.partition(":")[2]

    async def aclose(self) -> None:
        await self.provider.aclose()


async def test_required_tool_call_is_not_faked_by_a_schema_answer(
    stack: Stack, llama_server: LlamaServer
) -> None:
    ref = await register_agent(
        stack,
        model="llamacpp:smollm2",
        tool_choice="required",
        max_iterations=4,
        output_schema={
            "type": "object",
            "properties": {"fee": {"type": "number"}},
            "required": ["fee"],
        },
    )
    await stack.start_worker(
        tools=ToolRegistry([EchoTool()]),  # type: ignore[list-item]
        llm=LlamaRegistry(llama_provider(llama_server)),
        agent_schema_retries=1,
        agent_max_tokens_per_turn=12,
    )
    task = await stack.add_task(ref, {"prompt": "What is the fee of tx_1?"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task, timeout=240)
    rows = await llm_rows(stack, task.task_id)
    # The tiny model never calls the tool on its own; the loop does not take its answer.
    assert result.status == "failed", result.output
    assert result.error is not None
    assert result.error.code == "agent_no_tool_call"
    assert len(rows) == 2  # the answer and one re-ask (agent_schema_retries=1)
    assert all(r.status == "ok" and not r.tool_calls for r in rows)
    assert all(r.request["tool_choice"] == "required" for r in rows)
