"""Task kinds → executors. A `tool` task is one tool call; an `agent` executor (LLM + tool
loop) plugs in later with the same interface: `registry.register("agent", AgentExecutor())`.

The retry loop, timeouts, cancellation, claim-check and result publication live around the
executor (execution.py / handler.py), so an executor only turns params into an output.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cadenza_events import NonRetryableError, TaskReady
from cadenza_events.tracing import child_span
from cadenza_runtime import labelled
from cadenza_workflow import TaskApproval, merge_approval
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import metrics
from .budgets import BudgetLimits
from .errors import UnknownKindError, UnknownToolError
from .holds import ApprovalGate, HoldRequested
from .journal import EffectJournal, ensure_json
from .store_outages import platform_calls
from .tools import Tool, ToolContext, ToolRegistry, has_side_effects, is_idempotent

tracer = trace.get_tracer("cadenza.worker")


@dataclass(frozen=True)
class TaskCall:
    """One try of one task attempt, as an executor sees it."""

    task: TaskReady
    params: dict[str, Any]
    context: ToolContext
    # Publishes a run event (kind, data) for the timeline; executors report their steps here.
    emit: Callable[[str, dict[str, Any]], None] = field(default=lambda _kind, _data: None)

    @property
    def try_number(self) -> int:
        return self.context.try_number


class Executor(Protocol):
    """Runs one try of a task of its kind. Raise typed errors (`retryable`, `code`) to fail;
    the caller retries, times out and cancels around it."""

    def label(self, task: TaskReady) -> str:
        """A bounded metric label for this task (e.g. the tool name, `unknown`)."""
        ...

    async def execute(self, call: TaskCall) -> Any: ...


class WithEffects(Protocol):
    def has_effects(self, task: TaskReady) -> bool:
        """Whether running ``task`` may make a side effect or write rows naming its task:
        then the attempt first waits for its dispatch's commit (``DispatchCheck``). An
        executor without this method is taken to have them."""
        ...


class ExecutorRegistry:
    def __init__(self, executors: dict[str, Executor] | None = None) -> None:
        self._executors: dict[str, Executor] = dict(executors or {})

    def register(self, kind: str, executor: Executor) -> None:
        if kind in self._executors:
            raise ValueError(f"an executor for kind {kind!r} is already registered")
        self._executors[kind] = executor

    def kinds(self) -> frozenset[str]:
        return frozenset(self._executors)

    def label(self, task: TaskReady) -> str:
        executor = self._executors.get(task.kind)
        return "unknown" if executor is None else executor.label(task)

    def has_effects(self, task: TaskReady) -> bool:
        """Whether ``task`` may make a side effect (``WithEffects``); True when its executor
        does not say, False for a kind with no executor (it fails without running)."""
        executor = self._executors.get(task.kind)
        if executor is None:
            return False
        says = getattr(executor, "has_effects", None)  # a task's cost: no isinstance check
        return True if says is None else bool(says(task))

    async def execute(self, call: TaskCall) -> Any:
        executor = self._executors.get(call.task.kind)
        if executor is None:
            raise UnknownKindError(
                f"no executor for task kind {call.task.kind!r} (known: {sorted(self._executors)})"
            )
        return await executor.execute(call)


async def invoke_tool(
    tool: Tool,
    params: dict[str, Any],
    ctx: ToolContext,
    journal: EffectJournal,
    call_index: int = 0,
) -> Any:
    """One tool call with its span, metrics and (for tools with side effects) the effect
    journal. Shared by the tool executor and, later, the agent loop (call_index 0, 1, …)."""

    def attributes() -> dict[str, AttributeValue]:
        return {
            "cadenza.tool.name": tool.name,
            "cadenza.run_id": ctx.run_id,
            "cadenza.task_id": ctx.task_id,
            "cadenza.attempt": ctx.attempt,
            "cadenza.try": ctx.try_number,
            "cadenza.tool.call_index": call_index,
        }

    with child_span(tracer, f"tool {tool.name}", attributes) as span:
        started = time.perf_counter()
        try:
            if has_side_effects(tool):

                async def call() -> Any:
                    return await tool(params, ctx)

                if is_idempotent(tool, params):
                    result, replayed = await journal.run(ctx.task_id, call_index, tool.name, call)
                else:
                    result, replayed = await journal.run_once(
                        ctx.task_id, call_index, tool.name, params, call
                    )
            else:
                result, replayed = await tool(params, ctx), False
                ensure_json(result, tool.name)
        except HoldRequested:
            metrics.TOOL_CALLS.labels(tool.name, "held").inc()
            raise
        except Exception as exc:
            metrics.TOOL_CALLS.labels(tool.name, "error").inc()
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            raise
        finally:
            labelled(metrics.TOOL_DURATION, tool.name).observe(time.perf_counter() - started)
        span.set_attribute("cadenza.tool.replayed", replayed)
        labelled(metrics.TOOL_CALLS, tool.name, "replayed" if replayed else "ok").inc()
        return result


class ApprovalRejectedError(NonRetryableError):
    """A `tool` task's call was not approved (rejected, or no answer in time)."""

    code = "approval_rejected"


class ToolExecutor:
    """kind=tool: look the tool up by the task's `name` and call it once — unless the call
    needs approval or its effect is in doubt: then the task is held (a ``Hold`` output)."""

    def __init__(
        self,
        tools: ToolRegistry,
        journal: EffectJournal,
        gate: ApprovalGate | None = None,
        policies: BudgetLimits | None = None,
    ) -> None:
        self._tools = tools
        self._journal = journal
        self._gate = gate or ApprovalGate()
        self._policies = policies  # the workflow task's own approval rules, when given

    def label(self, task: TaskReady) -> str:
        return task.name if task.name in self._tools else "unknown"

    def has_effects(self, task: TaskReady) -> bool:
        """Only a tool with side effects (journaled); an unknown tool fails without a call."""
        tool = self._tools.get(task.name)
        return tool is not None and has_side_effects(tool)

    async def _rules(self, task: TaskReady) -> TaskApproval | None:
        """The workflow task's own approval rules: carried in the event (``{}``: none; no
        database read per task), or, in an event an older orchestrator wrote without them
        (null), read from the run's spec."""
        if task.approval is not None:
            return TaskApproval.model_validate(task.approval) if task.approval else None
        if self._policies is None:
            return None
        return (await self._policies.run_policy(task.run_id)).approvals.get(task.node_id)

    async def execute(self, call: TaskCall) -> Any:
        tool = self._tools.get(call.task.name)
        if tool is None:
            raise UnknownToolError(
                f"no tool named {call.task.name!r} on this worker "
                f"(known: {', '.join(sorted(self._tools.names()))})"
            )
        task = call.task
        try:
            with platform_calls():  # the tool's own call below is not one
                rules = await self._rules(task)
                policy = merge_approval(None, rules, timeout_s=self._gate.timeout_s)
                answer = await self._gate.check(
                    tool,
                    call.params,
                    call_index=0,
                    task_id=task.task_id,
                    decisions=self._journal.decisions,
                    policy=policy,
                    reason=f"workflow task {task.node_id!r} calls {tool.name}",
                )
            if answer is not None and not answer.approved:
                raise ApprovalRejectedError(f"{tool.name}: {answer.refusal()}")
            return await invoke_tool(tool, call.params, call.context, self._journal)
        except HoldRequested as held:
            return held.hold
