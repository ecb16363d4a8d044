"""One agent task as a LangGraph `StateGraph`: model ⇄ tools until a final answer.

    START ─▶ (resume point) ─▶ model ──tool calls──▶ tools ─┐
                                 ▲ └─final / handoff─▶ END   │
                                 └───────────────────────────┘

Every step is checkpointed (thread = task attempt), so a worker that dies mid-loop resumes
at the step it was in; completed tool calls are already in the checkpointed messages and
are not made again. The last allowed turn offers no tools, so the loop always ends with an
answer (or a clear failure) within `max_iterations` LLM calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema
from cadenza_events import CadenzaError
from cadenza_llm import (
    ChatRequest,
    ChatResponse,
    PriceTable,
    Provider,
    ToolCall,
    ToolChoice,
    ToolSpec,
    assistant_message,
    tool_message,
)
from cadenza_state import utcnow
from cadenza_workflow import AgentSpec
from opentelemetry import trace
from pydantic import ValidationError

from ..budgets import CallBudget, Reservation
from ..errors import StoreUnavailable
from ..guardrails import PiiGuard, enforce
from ..holds import ApprovalGate, HoldRequested
from ..journal import EffectJournal
from ..kinds import invoke_tool
from ..tools import Tool, ToolContext, agent_tool_schema
from . import metrics
from .accounting import Accounting, CallSite
from .errors import AgentNoToolCallError, AgentOutputError
from .state import AgentState

if TYPE_CHECKING:  # LangGraph loads with the first agent task, not with the worker
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

log = logging.getLogger("cadenza.worker.agents")
tracer = trace.get_tracer("cadenza.worker")

HANDOFF_PREFIX = "handoff_to_"
_HANDOFF_PARAMETERS = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "description": "Why the other agent should take over."}
    },
    "required": ["reason"],
}

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class LoopLimits:
    max_schema_retries: int = 2
    max_observation_chars: int = 4_000
    tool_timeout_s: float = 30.0
    max_tokens_per_turn: int = 512


@dataclass
class AgentRun:
    """Everything one agent task attempt needs; the graph's nodes close over it."""

    spec: AgentSpec
    provider: Provider
    model: str
    tools: dict[str, Tool]  # the allowlisted tools this worker has
    ctx: ToolContext
    site: CallSite
    accounting: Accounting
    journal: EffectJournal
    prices: PriceTable
    limits: LoopLimits = field(default_factory=LoopLimits)
    emit: EventSink = lambda _kind, _data: None
    gate: ApprovalGate = field(default_factory=ApprovalGate)
    budget: CallBudget | None = None  # reserve-before / settle-after each LLM call
    pii: PiiGuard | None = None  # output checks of answers and tool arguments

    @property
    def agent(self) -> str:
        return self.spec.name


def handoff_tool_name(agent: str) -> str:
    return HANDOFF_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", agent)[: 64 - len(HANDOFF_PREFIX)]


class AgentLoop:
    def __init__(self, run: AgentRun) -> None:
        self.run = run
        self._handoffs = {handoff_tool_name(a): a for a in run.spec.handoffs}
        self._tool_specs = self._offered_tools()

    def compile(self, checkpointer: BaseCheckpointSaver[str]) -> CompiledStateGraph[Any]:
        # Imported here: a worker that only runs tool tasks never loads LangGraph (~0.6 s of
        # CPU at its start).
        from langgraph.graph import END, START, StateGraph

        graph = StateGraph(AgentState)
        graph.add_node("model", self._model)
        graph.add_node("tools", self._tools)
        graph.add_conditional_edges(START, self._resume_point, ["model", "tools"])
        graph.add_conditional_edges("model", self._after_model, ["model", "tools", END])
        graph.add_conditional_edges("tools", self._after_tools, ["model", END])
        return graph.compile(checkpointer=checkpointer)

    # -- routing -------------------------------------------------------------------------

    @staticmethod
    def _resume_point(state: AgentState) -> str:
        """Tool calls the model asked for but whose results are missing run first."""
        messages = state.get("messages", [])
        return "tools" if messages and _pending_tool_calls(messages) else "model"

    def _after_model(self, state: AgentState) -> str:
        from langgraph.graph import END  # loaded by compile() already: a dict lookup

        if "final" in state or "handoff" in state:
            return END
        if _pending_tool_calls(state["messages"]):
            return "tools"
        return "model"  # an answer sent back for not matching the schema

    @staticmethod
    def _after_tools(state: AgentState) -> str:
        from langgraph.graph import END

        return END if "handoff" in state else "model"

    # -- the model step --------------------------------------------------------------------

    async def _model(self, state: AgentState) -> dict[str, Any]:
        run, spec = self.run, self.run.spec
        turn = state.get("turns", 0)
        last_turn = turn + 1 >= spec.max_iterations
        # An answer turn (after a free-text answer that missed the output schema) offers no
        # tools, so the provider sends the schema: see _rejected_answer.
        tools = [] if last_turn or state.get("answering") else self._tool_specs
        request = ChatRequest(
            model=run.model,
            messages=state["messages"],
            tools=tools,
            tool_choice=self._tool_choice(state, tools),
            response_schema=spec.output_schema,
            temperature=spec.temperature,
            max_tokens=run.limits.max_tokens_per_turn,
        )
        reservation = await self._reserve(request, turn)
        started_at, started = utcnow(), time.perf_counter()
        try:
            response = await run.provider.chat(request)
        except Exception as exc:
            if run.budget is not None:
                await run.budget.release(reservation)
            await self._record_turn(turn, request, None, started_at, started, exc)
            metrics.AGENT_TURNS.labels(run.agent, "error").inc()
            raise
        response = self._redacted_reply(response, turn)  # before it is stored anywhere
        cost = await self._record_turn(turn, request, response, started_at, started, None)
        if run.budget is not None:
            await run.budget.settle(reservation, response.usage, cost)
        update: dict[str, Any] = {
            "messages": [assistant_message(response)],
            "turns": turn + 1,
            "tokens": state.get("tokens", 0) + response.usage.total_tokens,
            "cost_usd": state.get("cost_usd", 0.0) + cost,
        }
        if response.tool_calls:
            metrics.AGENT_TURNS.labels(run.agent, "tool_calls").inc()
            return update
        if request.tool_choice == "required":
            return self._missing_tool_call(state, update, last_turn)
        answer, problem = self._final_answer(response.content)
        if problem is None:
            metrics.AGENT_TURNS.labels(run.agent, "final").inc()
            if not self._redacts("output"):  # a redacting policy ran on the reply already
                answer = enforce(
                    run.pii,
                    answer,
                    target="output",
                    agent=run.agent,
                    where="the final answer",
                    target_id=f"turn:{turn}",
                    emit=run.emit,
                )
            return {**update, "final": answer}
        return self._rejected_answer(state, update, problem, last_turn, bool(tools))

    def _missing_tool_call(
        self, state: AgentState, update: dict[str, Any], last_turn: bool
    ) -> dict[str, Any]:
        """``tool_choice: required`` and the model answered anyway: a server that ignores
        ``tool_choice`` (llama.cpp does) must not turn an ungrounded answer into the output.
        The model is asked again, at most ``max_schema_retries`` times."""
        run = self.run
        metrics.AGENT_TURNS.labels(run.agent, "no_tool_call").inc()
        retries = state.get("tool_choice_retries", 0)
        if retries >= run.limits.max_schema_retries or last_turn:
            raise AgentNoToolCallError(
                f"agent {run.agent!r} has tool_choice 'required' but answered without calling "
                f"a tool {retries + 1} time(s) (the provider does not enforce tool_choice)"
            )
        names = ", ".join(t.name for t in self._tool_specs)
        return _sent_back(
            update,
            f"You must call one of the tools ({names}) before answering. Reply with a tool call.",
            tool_choice_retries=retries + 1,
        )

    def _rejected_answer(
        self,
        state: AgentState,
        update: dict[str, Any],
        problem: str,
        last_turn: bool,
        offered_tools: bool,
    ) -> dict[str, Any]:
        """An answer that misses the output schema goes back with the errors. If tools were
        offered on that turn, the next one is an answer turn without tools: providers send
        the schema only when the model is to answer (with tools too, llama.cpp would answer
        the schema at once and never call a tool)."""
        run = self.run
        metrics.AGENT_TURNS.labels(run.agent, "invalid").inc()
        retries = state.get("schema_retries", 0)
        if retries >= run.limits.max_schema_retries or last_turn:
            raise AgentOutputError(
                f"agent {run.agent!r}: the final answer does not match its output_schema "
                f"after {retries + 1} answer(s): {problem}"
            )
        answering = offered_tools and self.run.spec.output_schema is not None
        return _sent_back(
            update,
            f"Your answer is invalid: {problem}. Reply again with only JSON that matches the "
            "required schema.",
            schema_retries=retries + 1,
            **({"answering": True} if answering else {}),
        )

    def _final_answer(self, content: str | None) -> tuple[Any, str | None]:
        """The accepted answer, or why it is not acceptable."""
        schema = self.run.spec.output_schema
        if schema is None:
            return (content or "").strip(), None
        try:
            value = json.loads(content or "")
        except json.JSONDecodeError as exc:
            return None, f"not JSON ({exc.msg} at position {exc.pos})"
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            return None, "; ".join(
                f"at {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:200]}"
                for e in errors[:5]
            )
        return value, None

    def _tool_choice(self, state: AgentState, tools: list[ToolSpec]) -> ToolChoice:
        """``required`` holds only until the first tool call (as OpenAI's Agents SDK resets
        it): forcing every turn would never let the agent answer."""
        if not tools:
            return "none"
        if self.run.spec.tool_choice == "required" and not state.get("tool_calls_made", 0):
            return "required"
        return "auto"

    async def _reserve(self, request: ChatRequest, turn: int) -> Reservation | None:
        """Reserve the call's worst case on every budget that applies, or stop the agent
        (BudgetExceededError, recorded on the timeline) without making the call."""
        run = self.run
        if run.budget is None:
            return None
        meta = json.dumps({"run_id": run.site.run_id, "task_id": run.site.task_id, "turn": turn})
        try:
            return await run.budget.reserve(request, meta)
        except CadenzaError as exc:
            if exc.code == "budget_exceeded":
                run.emit(
                    "budget.exceeded", {"agent": run.agent, "turn": turn, **(exc.details or {})}
                )
            raise

    async def _record_turn(
        self,
        turn: int,
        request: ChatRequest,
        response: ChatResponse | None,
        started_at: Any,
        started: float,
        error: BaseException | None,
    ) -> float:
        run = self.run
        latency_ms = (time.perf_counter() - started) * 1000
        provider = response.provider if response else run.provider.name
        model = response.model if response else run.model
        cost = run.prices.cost(provider, model, response.usage) if response else 0.0
        if response is not None:
            labels = (run.site.tenant_id, run.agent, model)
            metrics.AGENT_TOKENS.labels(*labels, "input").inc(response.usage.input_tokens)
            metrics.AGENT_TOKENS.labels(*labels, "output").inc(response.usage.output_tokens)
            metrics.AGENT_COST.labels(*labels).inc(cost)
        tool_calls = [c.model_dump() for c in response.tool_calls] if response else None
        await run.accounting.llm_call(
            run.site,
            turn=turn,
            provider=provider,
            model=model,
            request=request.model_dump(mode="json", exclude_none=True),
            response=_response_record(response),
            tool_calls=tool_calls or None,
            input_tokens=response.usage.input_tokens if response else 0,
            output_tokens=response.usage.output_tokens if response else 0,
            cost_usd=cost,
            latency_ms=response.latency_ms if response else latency_ms,
            status="ok" if error is None else "error",
            error=_error_record(error),
            started_at=started_at,
        )
        run.emit(
            "llm.call",
            {
                "agent": run.agent,
                "turn": turn,
                "model": f"{provider}:{model}",
                "input_tokens": response.usage.input_tokens if response else 0,
                "output_tokens": response.usage.output_tokens if response else 0,
                "cost_usd": cost,
                "latency_ms": round(latency_ms, 3),
                "tool_calls": [c["name"] for c in tool_calls or []],
                "status": "ok" if error is None else "error",
            },
        )
        return cost

    # -- redaction -------------------------------------------------------------------------

    def _redacts(self, target: str) -> bool:
        pii = self.run.pii
        return pii is not None and pii.policy.action == "redact" and target in pii.policy.targets

    def _redacted_reply(self, response: ChatResponse, turn: int) -> ChatResponse:
        """With a ``redact`` policy the model's reply is redacted as it arrives — before it
        is recorded (``llm_calls``, claim-checked bodies), checkpointed (the conversation the
        next turns and a resumed attempt see) or used (the answer, the tool arguments): the
        raw text is never stored. Findings are recorded here, once (run event, span,
        metric). ``block`` and ``flag`` are applied where the answer or the call is used."""
        update: dict[str, Any] = {}
        if response.content and self._redacts("output"):
            where = "the model's reply" if response.tool_calls else "the final answer"
            content = self._redacted_text(response.content, where, f"turn:{turn}")
            if content != response.content:
                update["content"] = content
        if response.tool_calls and self._redacts("tool_arguments"):
            replaced = [
                call.model_copy(update={"arguments": arguments})
                if (arguments := self._checked_arguments(call)) is not call.arguments
                else call
                for call in response.tool_calls
            ]
            if any(a is not b for a, b in zip(replaced, response.tool_calls, strict=True)):
                update["tool_calls"] = replaced
        return response.model_copy(update=update) if update else response

    def _checked_arguments(self, call: ToolCall) -> dict[str, Any]:
        """A tool call's arguments after the PII policy (redacted, recorded, or raises)."""
        run = self.run
        checked: dict[str, Any] = enforce(
            run.pii,
            call.arguments,
            target="tool_arguments",
            agent=run.agent,
            where=f"the arguments of tool {call.name!r}",
            target_id=call.id,
            emit=run.emit,
        )
        return checked

    def _redacted_text(self, text: str, where: str, target_id: str) -> str:
        """A reply's text, redacted. A structured answer (JSON) is redacted string by string
        and written back as JSON, so the markers never break the document."""
        run = self.run
        value: Any = text
        parsed = False
        if run.spec.output_schema is not None:
            try:
                value, parsed = json.loads(text), True
            except json.JSONDecodeError:
                value = text
        redacted = enforce(
            run.pii,
            value,
            target="output",
            agent=run.agent,
            where=where,
            target_id=target_id,
            emit=run.emit,
        )
        if redacted is value:
            return text
        return json.dumps(redacted, ensure_ascii=False) if parsed else str(redacted)

    # -- the tools step --------------------------------------------------------------------

    async def _tools(self, state: AgentState) -> dict[str, Any]:
        run = self.run
        messages = state["messages"]
        turn = max(state.get("turns", 1) - 1, 0)
        index = state.get("tool_calls_made", 0)
        replies: list[dict[str, Any]] = []
        for call in _pending_tool_calls(messages):
            target = self._handoffs.get(call.name)
            if target is not None:
                metrics.AGENT_HANDOFFS.labels(run.agent).inc()
                reason = str(call.arguments.get("reason", ""))[:2000]
                replies.append(tool_message(call, json.dumps({"handed_off_to": target})))
                await self._record_tool(turn, index, call, {"agent": target}, "ok", None, 0.0)
                run.emit("agent.handoff", {"agent": run.agent, "to": target, "reason": reason})
                return {
                    "messages": replies,
                    "tool_calls_made": index + 1,
                    "handoff": {"agent": target, "reason": reason, "from": run.agent},
                }
            reply = await self._call_tool(turn, index, call, _said(messages))
            replies.append(tool_message(call, reply))
            index += 1
        return {"messages": replies, "tool_calls_made": index}

    async def _call_tool(self, turn: int, index: int, call: ToolCall, said: str = "") -> str:
        """Run one tool call; whatever happens, the model gets a bounded observation —
        except a hold (approval needed, effect in doubt), which stops the loop here: its
        checkpoint has this call pending, so the next attempt resumes exactly at it."""
        run = self.run
        started = time.perf_counter()
        tool = run.tools.get(call.name)
        if call.name not in run.spec.tools or tool is None:
            reason = (
                f"tool {call.name!r} is not allowed for agent {run.agent!r}"
                if call.name not in run.spec.tools
                else f"tool {call.name!r} is not available on this worker"
            )
            log.warning("%s (task %s)", reason, run.site.task_id)
            trace.get_current_span().add_event(
                "agent.tool_refused", {"cadenza.tool.name": call.name, "reason": reason}
            )
            await self._record_tool(turn, index, call, None, "refused", reason, 0.0)
            return self._observation({"error": reason})
        params_model = getattr(tool, "params_model", None)
        if params_model is not None:
            try:
                params_model.model_validate(call.arguments)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
                await self._record_tool(turn, index, call, None, "invalid_args", problems, 0.0)
                return self._observation({"error": f"invalid arguments: {problems}"})
        if not self._redacts("tool_arguments"):  # else redacted in the reply already
            self._checked_arguments(call)  # block raises; flag records, arguments unchanged
        try:
            answer = await run.gate.check(
                tool,
                call.arguments,
                call_index=index,
                task_id=run.site.task_id,
                decisions=run.journal.decisions,
                policy=run.spec.approval,
                reason=said,
            )
        except HoldRequested as held:
            await self._record_tool(turn, index, call, None, "held", held.hold.rule, 0.0)
            raise
        if answer is not None and not answer.approved:
            refusal = answer.refusal()
            await self._record_tool(turn, index, call, None, "rejected", refusal, 0.0)
            return self._observation({"error": refusal})
        try:
            async with asyncio.timeout(run.limits.tool_timeout_s):
                result = await invoke_tool(tool, call.arguments, run.ctx, run.journal, index)
        except HoldRequested as held:  # its effect is in doubt
            await self._record_tool(turn, index, call, None, "in_doubt", held.hold.reason, 0.0)
            raise
        except StoreUnavailable:
            # A platform store (the journal, or one the tool used through its context) is
            # away: no observation for the model; the attempt pauses and resumes at this
            # call from its checkpoint once the store is back.
            raise
        except TimeoutError:
            reason = f"tool {call.name!r} timed out after {run.limits.tool_timeout_s:g}s"
            await self._record_tool(turn, index, call, None, "timeout", reason, _ms(started))
            return self._observation({"error": reason})
        except CadenzaError as exc:
            await self._record_tool(turn, index, call, None, "error", str(exc), _ms(started))
            return self._observation({"error": str(exc)[:1000], "code": exc.code})
        except Exception as exc:  # a tool bug is an observation too, never a crashed loop
            log.warning("tool %s failed in task %s", call.name, run.site.task_id, exc_info=True)
            message = f"{type(exc).__name__}: {exc}"[:1000]
            await self._record_tool(turn, index, call, None, "error", message, _ms(started))
            return self._observation({"error": message})
        await self._record_tool(turn, index, call, result, "ok", None, _ms(started))
        return self._observation(result)

    async def _record_tool(
        self,
        turn: int,
        index: int,
        call: ToolCall,
        result: Any,
        status: str,
        error: str | None,
        latency_ms: float,
    ) -> None:
        run = self.run
        metrics.AGENT_TOOL_CALLS.labels(run.agent, status).inc()
        await run.accounting.tool_call(
            run.site,
            turn=turn,
            call_index=index,
            call_id=call.id,
            tool=call.name,
            arguments=call.arguments,
            result=result,
            status=status,
            error=error,
            latency_ms=latency_ms,
            started_at=utcnow(),
        )
        run.emit(
            "tool.call",
            {
                "agent": run.agent,
                "turn": turn,
                "call_index": index,
                "tool": call.name,
                "status": status,
                "latency_ms": round(latency_ms, 3),
                **({"error": error[:500]} if error else {}),
            },
        )

    def _observation(self, value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        limit = self.run.limits.max_observation_chars
        return text if len(text) <= limit else text[:limit] + f"… [truncated, {len(text)} chars]"

    def _offered_tools(self) -> list[ToolSpec]:
        """The allowlisted tools this worker has and can describe, plus one handoff tool per
        allowed target. (A listed tool the worker lacks is refused if the model calls it.)"""
        specs: list[ToolSpec] = []
        for name in self.run.spec.tools:
            tool = self.run.tools.get(name)
            schema = agent_tool_schema(tool) if tool is not None else None
            if schema is not None:
                specs.append(ToolSpec(**schema))
        for name, target in self._handoffs.items():
            specs.append(
                ToolSpec(
                    name=name,
                    description=f"Hand this task over to the agent {target!r}.",
                    parameters=_HANDOFF_PARAMETERS,
                )
            )
        return specs


def _sent_back(update: dict[str, Any], feedback: str, **counters: Any) -> dict[str, Any]:
    """The turn's update plus a user message telling the model why its answer is refused."""
    messages = [*update["messages"], {"role": "user", "content": feedback}]
    return {**update, "messages": messages, **counters}


def _pending_tool_calls(messages: list[dict[str, Any]]) -> list[ToolCall]:
    """The last assistant message's tool calls that have no tool result yet."""
    answered: set[str] = set()
    for message in reversed(messages):
        if message.get("role") == "tool":
            answered.add(str(message.get("tool_call_id")))
            continue
        if message.get("role") != "assistant":
            return []
        calls = []
        for raw in message.get("tool_calls") or []:
            if raw["id"] in answered:
                continue
            function = raw["function"]
            arguments = function.get("arguments") or "{}"
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
            calls.append(ToolCall(id=raw["id"], name=function["name"], arguments=parsed))
        return calls
    return []


def _said(messages: list[dict[str, Any]]) -> str:
    """What the model said with its tool calls (shown to whoever approves them)."""
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return str(message.get("content") or "")
    return ""


def _response_record(response: ChatResponse | None) -> dict[str, Any] | None:
    if response is None:
        return None
    return response.model_dump(mode="json", exclude={"raw"}, exclude_none=True)


def _error_record(error: BaseException | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"type": type(error).__name__, "message": str(error)[:2000]}


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
