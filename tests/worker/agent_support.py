"""Helpers of the agent tests: a scripted LLM provider (a test double: each call returns the
next scripted turn and records the request) and agent registration."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cadenza_events import RetryableError
from cadenza_llm import ChatRequest, ChatResponse, Price, PriceTable, ToolCall, Usage
from cadenza_state import AgentRecord, LLMCallRecord, ToolCallRecord
from cadenza_worker import ToolRegistry
from cadenza_workflow import AgentSpec
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from worker_support import Stack

Turn = ChatResponse | Exception | Callable[[ChatRequest], ChatResponse]


def answer(content: Any, tokens: tuple[int, int] = (10, 5)) -> ChatResponse:
    text = content if isinstance(content, str) else json.dumps(content)
    return ChatResponse(
        content=text,
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]),
        model="m",
        provider="scripted",
        finish_reason="stop",
    )


def calls(*named: tuple[str, dict[str, Any]], tokens: tuple[int, int] = (10, 5)) -> ChatResponse:
    return ChatResponse(
        tool_calls=[
            ToolCall(id=f"call_{i}_{name}", name=name, arguments=args)
            for i, (name, args) in enumerate(named)
        ],
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1]),
        model="m",
        provider="scripted",
        finish_reason="tool_calls",
    )


@dataclass
class ScriptedProvider:
    turns: list[Turn]
    requests: list[ChatRequest] = field(default_factory=list)
    name: str = "scripted"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if not self.turns:
            raise AssertionError(f"unscripted LLM call: {request.summary()}")
        turn = self.turns.pop(0)
        if isinstance(turn, Exception):
            raise turn
        return turn(request) if callable(turn) else turn

    async def aclose(self) -> None:
        return None


@dataclass
class ScriptedRegistry:
    """Stands in for `cadenza_llm.ProviderRegistry`: every `scripted:*` model is ``provider``."""

    provider: ScriptedProvider
    # $1 per million input tokens, $2 per million output tokens: costs are easy to check.
    prices: PriceTable = field(
        default_factory=lambda: PriceTable(
            {"scripted:m": Price(input_per_mtok=1.0, output_per_mtok=2.0)}
        )
    )

    def resolve(self, ref: str) -> tuple[ScriptedProvider, str]:
        assert ref.startswith("scripted:"), ref
        return self.provider, ref.partition(":")[2]

    async def aclose(self) -> None:
        return None


def crash_once(message: str = "connection reset") -> RetryableError:
    return RetryableError(message, code="llm_unavailable")


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="What to echo.")


@dataclass
class EchoTool:
    """A pure tool that counts its calls (to prove a call is not repeated)."""

    name: str = "echo"
    description: str = "Echo the text back."
    params_model: type[BaseModel] = EchoParams
    side_effects: bool = False
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, params: dict[str, Any], ctx: Any) -> Any:
        self.calls.append(params)
        return {"echo": params["text"]}


async def register_agent(stack: Stack, version: int = 1, **fields: Any) -> str:
    spec = AgentSpec.model_validate(
        {
            "name": "helper",
            "system_prompt": "You help.",
            "model": "scripted:m",
            "tools": ["echo"],
            "max_iterations": 5,
            **fields,
        }
    )
    async with stack.resources.sessions() as session, session.begin():
        session.add(
            AgentRecord(
                tenant_id="acme", name=spec.name, version=version, spec=spec.model_dump(mode="json")
            )
        )
    return f"{spec.name}@{version}"


async def llm_rows(stack: Stack, task_id: str) -> list[LLMCallRecord]:
    async with stack.resources.sessions() as session:
        query = select(LLMCallRecord).where(LLMCallRecord.task_id == task_id)
        rows = (await session.execute(query.order_by(LLMCallRecord.id))).scalars()
        return list(rows)


async def tool_rows(stack: Stack, task_id: str) -> list[ToolCallRecord]:
    async with stack.resources.sessions() as session:
        query = select(ToolCallRecord).where(ToolCallRecord.task_id == task_id)
        rows = (await session.execute(query.order_by(ToolCallRecord.id))).scalars()
        return list(rows)


async def start_agent_worker(stack: Stack, provider: Any, **settings: Any) -> EchoTool:
    """A worker with the echo tool whose `scripted:*` models are ``provider``."""
    echo = EchoTool()
    await stack.start_worker(
        tools=ToolRegistry([echo]),  # type: ignore[list-item]
        llm=ScriptedRegistry(provider),
        **settings,
    )
    return echo
