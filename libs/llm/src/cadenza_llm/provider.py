"""The one interface every LLM backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .types import ChatRequest, ChatResponse


@runtime_checkable
class Provider(Protocol):
    """A chat-completions backend. ``name`` is the ``provider`` of ``provider:model``."""

    @property
    def name(self) -> str: ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    async def aclose(self) -> None: ...
