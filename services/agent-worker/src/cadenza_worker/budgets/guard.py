"""What the agent loop calls around each LLM call: reserve the worst case, then settle."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cadenza_events import NonRetryableError
from cadenza_llm import ChatRequest, PriceTable, Usage

from . import metrics
from .ledger import BudgetLedger, Level, Refusal, Reservation
from .limits import BudgetLimits

log = logging.getLogger("cadenza.worker.budgets")


class BudgetExceededError(NonRetryableError):
    """A budget ran out: the call was not made. ``details`` names the budget, the unit,
    its limit, what was spent (settled + reserved by calls in flight) and the call's ask."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message, code="budget_exceeded", details=details)


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """An upper estimate without the model's tokenizer: ~3 characters per token for the
    messages and tool schemas plus a few tokens of framing per message (real tokenizers
    average 3.5-4 characters per token on English and JSON)."""
    text = json.dumps(request.messages, ensure_ascii=False) + json.dumps(
        [t.model_dump() for t in request.tools], ensure_ascii=False
    )
    return len(text) // 3 + 4 * len(request.messages) + 8


@dataclass
class CallBudget:
    """The budgets of one agent task attempt (levels resolved once per attempt)."""

    ledger: BudgetLedger
    limits: BudgetLimits
    levels: list[Level]
    prices: PriceTable
    provider: str
    tenant_id: str
    refresh: Callable[[], Awaitable[list[Level]]] | None = None
    """Re-reads the levels with fresh limits (nothing cached) after a refusal."""

    async def reserve(self, request: ChatRequest, meta: str) -> Reservation | None:
        """Reserve the call's worst case on every level or raise; None when no level applies."""
        if not self.levels:
            return None
        prompt = estimate_prompt_tokens(request)
        worst = Usage(input_tokens=prompt, output_tokens=request.max_tokens or 0)
        tokens = worst.input_tokens + worst.output_tokens
        usd = self.prices.cost(self.provider, request.model, worst)
        answer = await self.ledger.reserve(self.levels, tokens, usd, self.limits.spent, meta)
        if isinstance(answer, Refusal) and self.refresh is not None:
            # The limits may have been raised since this attempt read them (a tenant limit
            # raised, a paused run resumed with a higher limit): ask once more, fresh.
            fresh = await self.refresh()
            if fresh != self.levels:
                self.levels = fresh
                answer = await self.ledger.reserve(fresh, tokens, usd, self.limits.spent, meta)
        await self._observe_tenant()
        if isinstance(answer, Refusal):
            metrics.RESERVATIONS.labels("refused", answer.level.scope).inc()
            metrics.EXCEEDED.labels(answer.level.scope, answer.unit).inc()
            raise _exceeded(answer)
        metrics.RESERVATIONS.labels("reserved", "").inc()
        return answer

    async def settle(self, reservation: Reservation | None, usage: Usage, cost: float) -> None:
        if reservation is not None:
            await self.ledger.settle(reservation, usage.total_tokens, cost)

    async def release(self, reservation: Reservation | None) -> None:
        """The call failed before any usage: give the whole reservation back."""
        if reservation is not None:
            await self.ledger.settle(reservation, 0, 0.0)

    async def _observe_tenant(self) -> None:
        for level in self.levels:
            if not level.scope.startswith("tenant_"):
                continue
            period = level.scope.removeprefix("tenant_")
            tokens, usd = await self.ledger.used(level)
            labels = (self.tenant_id, period)
            metrics.TENANT_USED.labels(*labels, "tokens").set(tokens)
            metrics.TENANT_USED.labels(*labels, "usd").set(usd)
            if level.max_tokens is not None:
                metrics.TENANT_LIMIT.labels(*labels, "tokens").set(level.max_tokens)
            if level.max_usd is not None:
                metrics.TENANT_LIMIT.labels(*labels, "usd").set(level.max_usd)


def _exceeded(refusal: Refusal) -> BudgetExceededError:
    level = refusal.level
    if refusal.unit == "usd":
        amounts = (
            f"${refusal.used:.6f} spent or reserved of ${refusal.limit:.6f}; "
            f"the next call needs up to ${refusal.requested:.6f}"
        )
    else:
        amounts = (
            f"{int(refusal.used)} tokens spent or reserved of {int(refusal.limit)}; "
            f"the next call needs up to {int(refusal.requested)}"
        )
    return BudgetExceededError(
        f"{level.scope} budget exceeded: {amounts}",
        {
            "budget": level.scope,
            "unit": refusal.unit,
            "limit": refusal.limit,
            "spent": refusal.used,
            "requested": refusal.requested,
            "on_exceeded": level.on_exceeded,
        },
    )
