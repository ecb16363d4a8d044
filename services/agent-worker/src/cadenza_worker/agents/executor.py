"""kind=agent: run a pinned agent definition as a checkpointed LangGraph loop.

Thread id = ``{task_id}:{attempt}``. Three ways in:
- no checkpoint for this attempt → a fresh loop, or, when an earlier attempt of the task left
  a checkpoint (its worker was lost and the task re-dispatched), that attempt's state;
- a checkpoint with a next step → resume there (a redelivery after a crash, or a retry);
- a finished checkpoint → its answer (the worker died after the loop but before reporting).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

from cadenza_events import Handoff, TaskReady
from cadenza_llm import PriceTable, ProviderRegistry
from cadenza_state import ObjectStore, StateSettings
from cadenza_state.checkpoints import thread_id
from cadenza_workflow import AgentSpec, combine, merge_approval
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..budgets import BudgetLedger, BudgetLimits, CallBudget, Level
from ..guardrails import PiiGuard
from ..guardrails.plugins import Detector
from ..holds import ApprovalGate, HoldRequested
from ..journal import EffectJournal
from ..kinds import TaskCall
from ..store_outages import platform_calls
from ..tools import ToolRegistry
from . import metrics
from .accounting import Accounting, CallSite
from .checkpoints import open_checkpointer
from .definitions import AgentDefinitions
from .loop import AgentLoop, AgentRun, LoopLimits
from .state import AgentState
from .tenant_providers import TenantProviders

if TYPE_CHECKING:  # LangGraph loads with the first agent task (``AgentLoop.compile``)
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

tracer = trace.get_tracer("cadenza.worker")


class AgentExecutor:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        state_settings: StateSettings,
        tools: ToolRegistry,
        journal: EffectJournal,
        llm: ProviderRegistry,
        prices: PriceTable,
        limits: LoopLimits | None = None,
        gate: ApprovalGate | None = None,
        *,
        objects: ObjectStore | None = None,
        claim_check_bytes: int = 256 * 1024,
        ledger: BudgetLedger | None = None,
        tenant_providers: TenantProviders | None = None,
        pii_detectors: Sequence[Detector] = (),
    ) -> None:
        self._definitions = AgentDefinitions(sessions)
        self._accounting = Accounting(sessions, objects, claim_check_bytes)
        self._state_settings = state_settings
        self._tools = tools
        self._journal = journal
        self._llm = llm
        self._prices = prices
        self._limits = limits or LoopLimits()
        self._gate = gate or ApprovalGate()
        self._ledger = ledger
        self._budget_limits = BudgetLimits(sessions)
        self.run_policies = self._budget_limits
        """The runs' policies (budgets, guardrails, tasks' approval rules), shared."""
        self._tenant_providers = tenant_providers
        self._pii_detectors = pii_detectors
        self._stack = AsyncExitStack()
        self._saver: BaseCheckpointSaver[str] | None = None
        self._saver_lock = asyncio.Lock()

    def label(self, task: TaskReady) -> str:
        return task.name.partition("@")[0]  # bounded: agent names, never versions

    async def aclose(self) -> None:
        if self._tenant_providers is not None:
            await self._tenant_providers.aclose()
        await self._stack.aclose()
        self._saver = None

    async def checkpointer(self) -> BaseCheckpointSaver[str]:
        """Opened on first use (a worker that never runs an agent never connects)."""
        async with self._saver_lock:
            if self._saver is None:
                self._saver = await self._stack.enter_async_context(
                    open_checkpointer(self._state_settings)
                )
            return self._saver

    def has_effects(self, task: TaskReady) -> bool:
        """An agent's turns are recorded (and cost money): its attempt waits for its
        dispatch's commit first (``DispatchCheck``)."""
        return True

    async def execute(self, call: TaskCall) -> Any:
        # Every store call of an agent attempt is the platform's (definitions, policies,
        # budgets, checkpoints, accounting): the loop turns a tool's own failures into
        # observations, and the LLM clients raise their own typed errors.
        with platform_calls():
            return await self._execute(call)

    async def _execute(self, call: TaskCall) -> Any:
        task, ctx = call.task, call.context
        spec, version = await self._definitions.load(ctx.tenant_id, task.name)
        spec = apply_overrides(spec, task.agent_overrides)
        if self._tenant_providers is not None:  # the run's tenant's own endpoint first
            provider, model = await self._tenant_providers.resolve(ctx.tenant_id, spec.model)
        else:
            provider, model = self._llm.resolve(spec.model)
        policy = await self._budget_limits.run_policy(task.run_id)
        guardrails = combine(spec.guardrails, policy.guardrails)
        task_approval = policy.approvals.get(task.node_id)
        if task_approval is not None:  # the workflow task's own rules join the agent's
            approval = merge_approval(spec.approval, task_approval, timeout_s=self._gate.timeout_s)
            spec = spec.model_copy(update={"approval": approval})
        run = AgentRun(
            spec=spec,
            provider=provider,
            model=model,
            tools={name: tool for name in spec.tools if (tool := self._tools.get(name))},
            ctx=ctx,
            site=CallSite(
                ctx.tenant_id, task.run_id, task.task_id, task.attempt, spec.name, version
            ),
            accounting=self._accounting,
            journal=self._journal,
            prices=self._prices,
            limits=self._limits,
            emit=call.emit,
            gate=self._gate,
            budget=await self._call_budget(ctx.tenant_id, task, spec, provider.name),
            pii=PiiGuard(guardrails.pii, self._pii_detectors)
            if guardrails and guardrails.pii
            else None,
        )
        graph = AgentLoop(run).compile(await self.checkpointer())
        config: RunnableConfig = {
            "configurable": {"thread_id": thread_id(task.task_id, task.attempt)},
            # model + tools per turn, plus schema retries: well above any legal path.
            "recursion_limit": 4 * spec.max_iterations + 10,
        }
        attributes: dict[str, AttributeValue] = {
            "cadenza.agent.name": spec.name,
            "cadenza.agent.version": version,
            "gen_ai.agent.name": spec.name,
            "cadenza.task_id": task.task_id,
            "cadenza.attempt": task.attempt,
        }
        with tracer.start_as_current_span(f"agent {spec.name}", attributes=attributes) as span:
            try:
                values, how = await self._run(graph, config, call, spec)
            except HoldRequested as held:
                # Checkpointed with the call pending: the next attempt resumes right there.
                span.set_attribute("cadenza.agent.held", held.hold.kind)
                return held.hold
            span.set_attribute("cadenza.agent.start", how)
            span.set_attribute("cadenza.agent.turns", values.get("turns", 0))
        return _output(values)

    async def _call_budget(
        self, tenant_id: str, task: TaskReady, spec: AgentSpec, provider: str
    ) -> CallBudget | None:
        """The budgets this attempt's LLM calls reserve against (none: no limits apply)."""
        if self._ledger is None:
            return None
        limits = self._budget_limits

        async def levels() -> list[Level]:
            return await limits.levels(
                tenant_id=tenant_id,
                run_id=task.run_id,
                task_id=task.task_id,
                agent=spec.name,
                agent_budget=spec.budget,
            )

        async def refresh() -> list[Level]:
            limits.forget(task.run_id, tenant_id)
            return await levels()

        current = await levels()
        if not current:
            return None
        return CallBudget(
            self._ledger, limits, current, self._prices, provider, tenant_id, refresh=refresh
        )

    async def _run(
        self,
        graph: CompiledStateGraph[Any],
        config: RunnableConfig,
        call: TaskCall,
        spec: AgentSpec,
    ) -> tuple[AgentState, str]:
        snapshot = await graph.aget_state(config)
        if snapshot.values:
            # Finished only with nothing left to run. `next` leaves out a step's tasks whose
            # writes were saved (pending writes) when its checkpoint was not: the attempt
            # stopped between the two (a crash, the database away), and the graph must go on.
            if not snapshot.next and not snapshot.tasks:
                return cast(AgentState, snapshot.values), "finished"
            metrics.AGENT_RESUMES.labels(spec.name).inc()
            return cast(AgentState, await graph.ainvoke(None, config)), "resumed"
        earlier = await self._earlier_attempt(graph, call.task)
        if earlier is not None:
            metrics.AGENT_RESUMES.labels(spec.name).inc()
            if "final" in earlier or "handoff" in earlier:
                return earlier, "finished"
            return cast(AgentState, await graph.ainvoke(earlier, config)), "resumed"
        initial: AgentState = {"messages": initial_messages(spec, call.params), "turns": 0}
        return cast(AgentState, await graph.ainvoke(initial, config)), "fresh"

    @staticmethod
    async def _earlier_attempt(
        graph: CompiledStateGraph[Any], task: TaskReady
    ) -> AgentState | None:
        """The newest checkpointed state of an earlier attempt of this task, if any."""
        for attempt in range(task.attempt - 1, 0, -1):
            config: RunnableConfig = {
                "configurable": {"thread_id": thread_id(task.task_id, attempt)}
            }
            snapshot = await graph.aget_state(config)
            if snapshot.values:
                return cast(AgentState, dict(snapshot.values))
        return None


OVERRIDABLE = frozenset({"system_prompt", "model"})


def apply_overrides(spec: AgentSpec, overrides: dict[str, Any] | None) -> AgentSpec:
    """The pinned definition with a fork's per-task overrides (system prompt, model)."""
    update = {k: v for k, v in (overrides or {}).items() if k in OVERRIDABLE and v is not None}
    return spec.model_copy(update=update) if update else spec


def initial_messages(spec: AgentSpec, params: dict[str, Any]) -> list[dict[str, Any]]:
    """System prompt, then the task: its prompt, its other params as context, and — after a
    handoff — the conversation the previous agent had."""
    context = {k: v for k, v in params.items() if k not in {"prompt", "handoff"}}
    prompt = params.get("prompt")
    user = str(prompt) if prompt is not None else "Do the task described by the context."
    if context:
        user += "\n\nContext:\n" + json.dumps(context, default=str, ensure_ascii=False)
    messages: list[dict[str, Any]] = [{"role": "system", "content": spec.system_prompt}]
    handoff = params.get("handoff")
    if isinstance(handoff, dict):
        transcript = "\n".join(
            f"{m.get('role')}: {m.get('content')}"
            for m in handoff.get("messages", [])
            if m.get("role") in {"user", "assistant"} and m.get("content")
        )
        user = (
            f"Agent {handoff.get('from')!r} handed this task to you: {handoff.get('reason')}\n"
            f"Their conversation so far:\n{transcript[-8000:]}\n\n{user}"
        )
    messages.append({"role": "user", "content": user})
    return messages


def _output(values: AgentState) -> Any:
    handoff = values.get("handoff")
    if handoff is not None:
        conversation = [m for m in values.get("messages", []) if m.get("role") != "system"]
        return Handoff(
            agent=handoff["agent"],
            reason=handoff.get("reason", ""),
            from_agent=handoff.get("from", ""),
            messages=conversation,
        )
    return values.get("final")
