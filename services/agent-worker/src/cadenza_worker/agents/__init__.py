"""kind=agent: LLM + tool loops run as checkpointed LangGraph graphs."""

from ..budgets import BudgetExceededError
from .accounting import Accounting, CallSite
from .checkpoints import open_checkpointer
from .definitions import AgentDefinitions, UnknownAgentError, split_ref
from .errors import AgentOutputError
from .executor import AgentExecutor, initial_messages, thread_id
from .loop import AgentLoop, AgentRun, LoopLimits, handoff_tool_name
from .tenant_providers import TenantProviders

__all__ = [
    "Accounting",
    "AgentDefinitions",
    "AgentExecutor",
    "AgentLoop",
    "AgentOutputError",
    "AgentRun",
    "BudgetExceededError",
    "CallSite",
    "LoopLimits",
    "TenantProviders",
    "UnknownAgentError",
    "handoff_tool_name",
    "initial_messages",
    "open_checkpointer",
    "split_ref",
    "thread_id",
]
