"""Tools a `tool` task can call, and the registry of the built-in ones."""

from __future__ import annotations

from cadenza_retrieval import Searcher

from ..settings import WorkerSettings
from .agent_builtins import CalculatorTool, CurrentTimeTool, calculate
from .base import (
    Tool,
    ToolContext,
    ToolRegistry,
    agent_tool_schema,
    has_side_effects,
    is_idempotent,
    requires_approval,
)
from .basic import FlakyTool, NoopTool, SleepTool, TransformTool
from .http import HttpRequestTool, HttpStatusError, ResponseTooLargeError
from .netguard import BlockedAddressError, blocked_reason, resolve_allowed
from .rag import RagSearchTool
from .reference import DatasetLookupTool, scenario_tools


def builtin_tools(settings: WorkerSettings, *, searcher: Searcher | None = None) -> ToolRegistry:
    """A registry with every built-in tool (the names in `cadenza_workflow.BUILTIN_TOOLS`);
    ``searcher`` is what `rag_search` searches with (default: from the environment)."""
    return ToolRegistry(
        [
            TransformTool(),
            NoopTool(),
            SleepTool(),
            FlakyTool(),
            HttpRequestTool(settings),
            CalculatorTool(),
            CurrentTimeTool(),
            RagSearchTool(searcher=searcher),
            *scenario_tools(),
        ]
    )


__all__ = [
    "BlockedAddressError",
    "CalculatorTool",
    "CurrentTimeTool",
    "DatasetLookupTool",
    "FlakyTool",
    "HttpRequestTool",
    "HttpStatusError",
    "NoopTool",
    "RagSearchTool",
    "ResponseTooLargeError",
    "SleepTool",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "TransformTool",
    "agent_tool_schema",
    "blocked_reason",
    "builtin_tools",
    "calculate",
    "has_side_effects",
    "is_idempotent",
    "requires_approval",
    "resolve_allowed",
    "scenario_tools",
]
