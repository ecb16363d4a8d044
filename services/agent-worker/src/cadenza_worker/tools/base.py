"""The tool interface and the registry a worker looks tools up in."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cadenza_state import HotState, ObjectStore
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("cadenza.worker.tools")


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know and use about the task it runs for."""

    tenant_id: str
    run_id: str
    task_id: str
    node_id: str
    attempt: int
    try_number: int
    hot: HotState
    objects: ObjectStore
    # The database, for tools that read tenant data (reference datasets); None in bare tests.
    sessions: async_sessionmaker[AsyncSession] | None = None


@runtime_checkable
class Tool(Protocol):
    """A named async callable. Raise `RetryableError` / `NonRetryableError` (or any
    `CadenzaError` with a `code`) to fail; return a JSON value to succeed.

    Optional attribute ``side_effects: bool`` (default True): tools with side effects have
    their result recorded in the effect journal and replayed on re-dispatch instead of being
    called twice. Pure tools set it False and are simply re-run.

    Optional ``idempotent: bool`` (or a method ``is_idempotent(params) -> bool``): whether
    making the call twice is harmless. A side-effecting call that is NOT idempotent is
    journaled before it is made; if its worker dies before recording the result, the task
    goes ``in_doubt`` for a person instead of being retried blindly. Undeclared: False.
    Optional ``requires_approval: bool``: every call waits for a person (docs/guardrails.md).

    Tools an agent may call also carry ``description: str`` and ``params_model`` (a pydantic
    model of their arguments): the model is shown its JSON Schema (see `agent_tool_schema`).
    """

    name: str

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any: ...


def has_side_effects(tool: Tool) -> bool:
    return bool(getattr(tool, "side_effects", True))


def is_idempotent(tool: Tool, params: dict[str, Any]) -> bool:
    """Whether calling ``tool`` with ``params`` twice is harmless (pure tools always are)."""
    if not has_side_effects(tool):
        return True
    check = getattr(tool, "is_idempotent", None)
    if callable(check):
        return bool(check(params))
    return bool(getattr(tool, "idempotent", False))


def requires_approval(tool: Tool) -> bool:
    return bool(getattr(tool, "requires_approval", False))


def agent_tool_schema(tool: Tool) -> dict[str, Any] | None:
    """``{name, description, parameters}`` for an LLM, or None if the tool does not describe
    its arguments (then agents cannot call it)."""
    model: type[BaseModel] | None = getattr(tool, "params_model", None)
    if model is None:
        return None
    return {
        "name": tool.name,
        "description": str(getattr(tool, "description", "") or (tool.__doc__ or "")).strip(),
        "parameters": model.model_json_schema(),
    }


class ToolRegistry:
    """Tools by name. Names are unique; the worker's registry must cover every name the
    gateway accepts in specs (`cadenza_workflow.BUILTIN_TOOLS`)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        if not tool.name:
            raise ValueError("a tool needs a name")
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    async def aclose(self) -> None:
        """Close tools holding resources (HTTP clients…): those with an ``aclose()``."""
        for tool in self._tools.values():
            close = getattr(tool, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # closing must not stop the others from closing
                    log.warning("closing tool %s failed", tool.name, exc_info=True)
