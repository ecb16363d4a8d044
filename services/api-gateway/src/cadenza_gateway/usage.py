"""Token, cost and tool-call accounting as the API returns it: totals per task, run, agent
and model, rolled up from the ``llm_calls`` and ``tool_calls`` rows the workers write.

Every recorded row counts — every LLM turn of every attempt, failed ones included — because
each one was sent to (and may be billed by) the provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel, Field

COST_DECIMALS = 9
"""Costs are sums of floats: rounding keeps ``0.1 + 0.2`` from showing as 0.30000000000000004."""


@dataclass(frozen=True)
class LLMUsageRow:
    """``llm_calls`` grouped by (task, agent, provider, model); ``task_id`` None = all tasks."""

    task_id: str | None
    agent: str
    provider: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class ToolUsageRow:
    """``tool_calls`` grouped by (task, agent); ``errors`` = calls whose status is not ok."""

    task_id: str | None
    agent: str
    calls: int
    errors: int


class ModelUsage(BaseModel):
    """What LLM turns used."""

    llm_calls: int = Field(default=0, description="LLM turns recorded (every attempt).")
    input_tokens: int = Field(default=0, description="Prompt tokens sent.")
    output_tokens: int = Field(default=0, description="Completion tokens received.")
    total_tokens: int = Field(default=0, description="input_tokens + output_tokens.")
    cost_usd: float = Field(default=0.0, description="Cost from the workers' price table.")

    def add_llm(self, row: LLMUsageRow) -> None:
        self.llm_calls += row.calls
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.total_tokens = self.input_tokens + self.output_tokens
        self.cost_usd = round(self.cost_usd + row.cost_usd, COST_DECIMALS)


class UsageTotals(ModelUsage):
    """What LLM turns and tool calls used."""

    tool_calls: int = Field(default=0, description="Tool calls made or refused.")
    tool_errors: int = Field(
        default=0, description="Tool calls that did not succeed (error, timeout or refused)."
    )

    def add_tool(self, row: ToolUsageRow) -> None:
        self.tool_calls += row.calls
        self.tool_errors += row.errors


class RunUsage(BaseModel):
    """A run's usage: totals, per agent name and per `provider:model`."""

    total: UsageTotals = Field(default_factory=UsageTotals)
    by_agent: dict[str, UsageTotals] = Field(
        default_factory=dict, description="Per agent name (all its versions)."
    )
    by_model: dict[str, ModelUsage] = Field(
        default_factory=dict,
        description="Per `provider:model` (LLM turns only; tool calls have no model).",
    )


class BudgetStatus(BaseModel):
    """A tenant budget against what its current period has spent."""

    period: str = Field(description="day or month (UTC calendar periods).")
    max_tokens: int | None = None
    max_usd: float | None = None
    spent_tokens: int = 0
    spent_usd: float = 0.0
    period_start: datetime


class TenantUsage(RunUsage):
    """The tenant's usage over a time window (rows recorded in [since, until))."""

    since: datetime | None = Field(default=None, description="Start of the window, if any.")
    until: datetime | None = Field(default=None, description="End of the window, if any.")
    by_workflow: dict[str, ModelUsage] = Field(
        default_factory=dict, description="LLM usage per workflow name (all its versions)."
    )
    budgets: list[BudgetStatus] = Field(
        default_factory=list,
        description="The tenant's day / month budgets (PUT /v1/budgets/{period}) against "
        "the spend of their current period (independent of since/until).",
    )


class RunSpend(ModelUsage):
    """One run's LLM spend in the window, with the limit it ran under."""

    run_id: str
    workflow_name: str
    status: str
    created_at: datetime
    max_tokens: int | None = Field(default=None, description="The run's token limit, if any.")
    max_usd: float | None = Field(default=None, description="The run's USD limit, if any.")


class RunsUsage(BaseModel):
    """The runs that spent the most in the window, most expensive first."""

    since: datetime | None = None
    until: datetime | None = None
    items: list[RunSpend]


@dataclass
class UsageRollup:
    """Everything the rows add up to; ``by_task`` is keyed by task instance id."""

    usage: RunUsage = field(default_factory=RunUsage)
    by_task: dict[str, UsageTotals] = field(default_factory=dict)


def roll_up(llm_rows: Iterable[LLMUsageRow], tool_rows: Iterable[ToolUsageRow]) -> UsageRollup:
    """Add grouped rows into per-task, per-agent, per-model and total usage."""
    out = UsageRollup()
    usage = out.usage
    for row in llm_rows:
        usage.total.add_llm(row)
        usage.by_agent.setdefault(row.agent, UsageTotals()).add_llm(row)
        usage.by_model.setdefault(f"{row.provider}:{row.model}", ModelUsage()).add_llm(row)
        if row.task_id is not None:
            out.by_task.setdefault(row.task_id, UsageTotals()).add_llm(row)
    for tool in tool_rows:
        usage.total.add_tool(tool)
        usage.by_agent.setdefault(tool.agent, UsageTotals()).add_tool(tool)
        if tool.task_id is not None:
            out.by_task.setdefault(tool.task_id, UsageTotals()).add_tool(tool)
    return out
