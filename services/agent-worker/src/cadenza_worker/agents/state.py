"""The state an agent loop checkpoints after every step."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class AgentState(TypedDict, total=False):
    # OpenAI-style chat messages, appended by each step (system, user, assistant, tool).
    messages: Annotated[list[dict[str, Any]], operator.add]
    turns: int  # LLM calls made so far (the next turn's index)
    tool_calls_made: int  # tool calls made so far (the next call's index)
    schema_retries: int  # answers sent back for not matching the output schema
    tool_choice_retries: int  # answers sent back for not calling a tool under `required`
    answering: bool  # the next turn offers no tools: the model is to answer in the schema
    tokens: int  # input + output tokens used so far (for the budget)
    cost_usd: float
    final: Any  # the accepted final answer; its presence ends the loop
    handoff: dict[str, Any]  # set when the agent hands the task to another agent
