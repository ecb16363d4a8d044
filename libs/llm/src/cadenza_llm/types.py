"""The one request/response shape every provider speaks (OpenAI chat-completions style)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROLES = ("system", "user", "assistant", "tool")
ToolChoice = Literal["auto", "required", "none"]


class ToolSpec(BaseModel):
    """A tool offered to the model: its arguments are described by a JSON Schema."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Tool name the model calls.")
    description: str = Field(default="", description="What the tool does, shown to the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object.",
    )


class ChatRequest(BaseModel):
    """One chat-completion turn. ``messages`` are OpenAI-style dicts: ``{role, content}``, plus
    ``tool_calls`` on assistant turns and ``tool_call_id``/``name`` on tool results."""

    model: str = Field(min_length=1, description="Model name within the provider (no prefix).")
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    response_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the final content must satisfy."
    )
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None

    @field_validator("messages")
    @classmethod
    def _known_roles(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, message in enumerate(messages):
            role = message.get("role")
            if role not in ROLES:
                raise ValueError(
                    f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}"
                )
        return messages

    @model_validator(mode="after")
    def _tools_consistent(self) -> ChatRequest:
        names = [t.name for t in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tools: duplicate tool names {duplicates}")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice: 'required' needs at least one tool in tools")
        return self

    def summary(self) -> str:
        """A short, human-readable description (for errors): model, turns, tools, last user text."""
        last_user = next(
            (str(m.get("content") or "") for m in reversed(self.messages) if m["role"] == "user"),
            "",
        )
        if len(last_user) > 80:
            last_user = last_user[:77] + "..."
        tools = ",".join(t.name for t in self.tools) or "none"
        return (
            f"model={self.model} messages={len(self.messages)} tools=[{tools}] "
            f"tool_choice={self.tool_choice} schema={'yes' if self.response_schema else 'no'} "
            f"last_user={last_user!r}"
        )


class ToolCall(BaseModel):
    """A tool call the model asked for; ``arguments`` is already parsed JSON."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ChatResponse(BaseModel):
    """The model's turn: final ``content`` (JSON text when a response schema was given) and/or
    ``tool_calls``. ``provider``/``model`` say who actually answered (use them for cost)."""

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model: str
    provider: str
    finish_reason: str | None = None
    latency_ms: float = 0.0
    raw: dict[str, Any] | None = None


def dump_arguments(arguments: dict[str, Any]) -> str:
    """Tool-call arguments as canonical JSON text (stable key order keeps cassette keys stable)."""
    return json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def assistant_message(response: ChatResponse) -> dict[str, Any]:
    """The OpenAI-style assistant message to append to the conversation after ``response``."""
    message: dict[str, Any] = {"role": "assistant", "content": response.content}
    if response.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": dump_arguments(call.arguments)},
            }
            for call in response.tool_calls
        ]
    return message


def tool_message(call: ToolCall, content: str) -> dict[str, Any]:
    """The OpenAI-style message carrying a tool's result back to the model."""
    return {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": content}
