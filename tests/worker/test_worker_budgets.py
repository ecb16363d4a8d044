"""Budgets on the worker: every LLM call reserves its worst case (prompt estimate +
max_tokens) against every budget that applies in one Redis script, settles after, and a
call that cannot reserve is not made. Real Redis/PostgreSQL/Kafka on the integration
stack; the ledger tests also run on fakeredis."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from agent_support import (
    ScriptedProvider,
    answer,
    calls,
    register_agent,
    start_agent_worker,
)
from cadenza_llm import ChatRequest, ChatResponse, Usage
from cadenza_state import RunRecord, TenantBudgetRecord
from cadenza_worker.budgets import BudgetLedger, Level, Refusal, Reservation, estimate_prompt_tokens
from support import assert_eventually
from worker_support import BOTH_STACKS, Stack, metric


async def no_spend(_level: Level) -> tuple[int, float]:
    return 0, 0.0


def level(scope: str, key: str, tokens: int | None = None, usd: float | None = None) -> Level:
    return Level(scope, f"{key}:{uuid.uuid4().hex}", tokens, usd, 600)


@BOTH_STACKS
async def test_a_reservation_takes_from_every_level_or_from_none(stack: Stack) -> None:
    ledger = BudgetLedger(stack.resources.hot, reservation_ttl_s=60)
    run, tenant = level("run", "run", tokens=100), level("tenant_day", "t", usd=0.01)
    first = await ledger.reserve([run, tenant], 60, 0.004, no_spend)
    assert isinstance(first, Reservation)
    refused = await ledger.reserve([run, tenant], 50, 0.004, no_spend)
    assert isinstance(refused, Refusal)
    assert (refused.level.scope, refused.unit, refused.used, refused.limit) == (
        "run",
        "tokens",
        60,
        100,
    )
    # Nothing was taken from the tenant level by the refused call.
    assert await ledger.used(tenant) == (60, pytest.approx(0.004))
    # Settling gives back what the call did not use; a second settle changes nothing.
    assert await ledger.settle(first, 25, 0.001) == "open"
    assert await ledger.settle(first, 25, 0.001) == "settled"
    assert await ledger.used(run) == (25, pytest.approx(0.001))
    assert await ledger.used(tenant) == (25, pytest.approx(0.001))
    assert isinstance(await ledger.reserve([run, tenant], 75, 0.009, no_spend), Reservation)


@BOTH_STACKS
async def test_a_missing_counter_is_seeded_from_the_ledger(stack: Stack) -> None:
    ledger = BudgetLedger(stack.resources.hot, reservation_ttl_s=60)
    run = level("run", "run", tokens=100)

    async def spent(_level: Level) -> tuple[int, float]:
        return 90, 0.0

    refused = await ledger.reserve([run], 20, 0.0, spent)
    assert isinstance(refused, Refusal)
    assert refused.used == 90


@BOTH_STACKS
async def test_expired_reservations_are_released_and_a_late_settle_still_charges(
    stack: Stack,
) -> None:
    ledger = BudgetLedger(stack.resources.hot, reservation_ttl_s=60)
    run = level("run", "run", tokens=100)
    crashed = await ledger.reserve([run], 80, 0.0, no_spend)
    slow = await ledger.reserve([run], 20, 0.0, no_spend)
    assert isinstance(crashed, Reservation)
    assert isinstance(slow, Reservation)
    assert await ledger.used(run) == (100, 0.0)
    far_future = 10**15
    released = await ledger.release_expired(now_ms=far_future)
    assert sorted(released) == sorted([crashed.id, slow.id])
    assert await ledger.used(run) == (0, 0.0)
    assert await ledger.release_expired(now_ms=far_future) == []  # nothing twice
    # The slow call finished after all: its real usage is charged now.
    assert await ledger.settle(slow, 15, 0.0) == "expired"
    assert await ledger.used(run) == (15, 0.0)


@BOTH_STACKS
async def test_concurrent_reservations_never_overspend(stack: Stack) -> None:
    ledger = BudgetLedger(stack.resources.hot, reservation_ttl_s=60)
    run = level("run", "run", tokens=550)
    results = await asyncio.gather(*(ledger.reserve([run], 100, 0.0, no_spend) for _ in range(20)))
    assert sum(isinstance(r, Reservation) for r in results) == 5
    assert await ledger.used(run) == (500, 0.0)


# -- the agent loop ---------------------------------------------------------------------


@BOTH_STACKS
async def test_a_budget_smaller_than_one_call_fails_before_the_call(stack: Stack) -> None:
    """The issue's example: a 10-token budget let a one-turn agent spend 44 tokens and
    succeed. Now the call's worst case does not fit, so it is never made."""
    ref = await register_agent(stack, budget={"max_tokens": 10}, tools=[])
    provider = ScriptedProvider([answer("expensive", tokens=(30, 14))])
    await start_agent_worker(stack, provider)
    task = await stack.add_task(ref, {"prompt": "hi"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget_exceeded"
    assert result.error.retryable is False
    assert result.error.details is not None
    assert result.error.details["budget"] == "task"
    assert result.error.details["limit"] == 10
    assert result.error.details["spent"] == 0
    assert provider.requests == []

    def kinds() -> list[str]:
        return [e.payload.kind for e in stack.events if e.payload.task_id == task.task_id]

    await assert_eventually(lambda: "budget.exceeded" in kinds(), message=f"{kinds()}")


async def test_the_token_budget_stops_the_loop_after_the_call_that_used_it(stack: Stack) -> None:
    ref = await register_agent(stack, budget={"max_tokens": 400})
    provider = ScriptedProvider(
        [calls(("echo", {"text": "a"}), tokens=(300, 20)), answer("never reached")]
    )
    await start_agent_worker(stack, provider, agent_max_tokens_per_turn=50)
    task = await stack.add_task(ref, {"prompt": "spend"}, kind="agent")
    await stack.dispatch(task)

    result = await stack.result(task)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.code == "budget_exceeded"
    assert "320 tokens spent or reserved of 400" in result.error.message
    assert len(provider.requests) == 1


@dataclass
class WorstCaseProvider:
    """Uses exactly what each call reserved (prompt estimate + max_tokens), slowly, so the
    20 tasks' calls overlap."""

    calls: list[ChatRequest] = field(default_factory=list)
    name: str = "scripted"

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls.append(request)
        await asyncio.sleep(0.3)
        return ChatResponse(
            content="done",
            usage=Usage(
                input_tokens=estimate_prompt_tokens(request),
                output_tokens=request.max_tokens or 0,
            ),
            model="m",
            provider="scripted",
            finish_reason="stop",
        )

    async def aclose(self) -> None:
        return None


@pytest.mark.integration
@pytest.mark.parametrize("stack", ["real"], indirect=True)
async def test_twenty_concurrent_tasks_against_a_run_budget_that_fits_five(stack: Stack) -> None:
    ref = await register_agent(stack, tools=[])
    provider = WorstCaseProvider()
    await start_agent_worker(stack, provider, concurrency=20)
    await start_agent_worker(
        stack, provider, concurrency=20
    )  # two workers share the budget through Redis
    # Probe: one call of the same agent and prompt in another run says what a call reserves.
    probe = await stack.add_task(ref, {"prompt": "go"}, kind="agent")
    await stack.dispatch(probe)
    assert (await stack.result(probe)).status == "succeeded"
    worst = estimate_prompt_tokens(provider.calls[0]) + (provider.calls[0].max_tokens or 0)
    provider.calls.clear()

    run_id = str(uuid.uuid4())
    tasks = [
        await stack.add_task(ref, {"prompt": "go"}, kind="agent", run_id=run_id) for _ in range(20)
    ]
    async with stack.resources.sessions() as session, session.begin():
        run = await session.get(RunRecord, run_id)
        assert run is not None
        run.budget = {"max_tokens": 5 * worst + worst // 2}
    refused = metric("cadenza_budget_reservations_total", outcome="refused", scope="run")
    await asyncio.gather(*(stack.dispatch(t) for t in tasks))

    results = [await stack.result(t, timeout=60) for t in tasks]
    succeeded = [r for r in results if r.status == "succeeded"]
    failed = [r for r in results if r.status == "failed"]
    assert len(succeeded) == 5
    assert len(provider.calls) == 5  # exactly the calls that fit were made
    assert len(failed) == 15
    assert all(r.error is not None and r.error.code == "budget_exceeded" for r in failed)
    assert all(r.error is not None and r.error.details["budget"] == "run" for r in failed)  # type: ignore[index]
    ledger = stack.workers[0].budgets
    used, _ = await ledger.used(Level("run", f"budget:run:{run_id}", None, None, 0))
    assert used == 5 * worst <= 5 * worst + worst // 2  # no overspend
    assert (
        metric("cadenza_budget_reservations_total", outcome="refused", scope="run") - refused == 15
    )


@BOTH_STACKS
async def test_a_tenant_day_budget_applies_to_every_run(stack: Stack) -> None:
    ref = await register_agent(stack, tools=[])
    async with stack.resources.sessions() as session, session.begin():
        session.add(TenantBudgetRecord(tenant_id="acme", period="day", max_usd=0.000001))
    provider = ScriptedProvider([answer("never")])
    await start_agent_worker(stack, provider)
    task = await stack.add_task(ref, {"prompt": "hi"}, kind="agent")
    await stack.dispatch(task)
    result = await stack.result(task)
    assert result.error is not None
    assert result.error.code == "budget_exceeded"
    assert result.error.details is not None
    assert (result.error.details["budget"], result.error.details["unit"]) == ("tenant_day", "usd")
    assert provider.requests == []
