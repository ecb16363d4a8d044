"""Budgets: reserve an LLM call's worst case against every level before the call, settle
after (see docs/guardrails.md)."""

from .guard import BudgetExceededError, CallBudget, estimate_prompt_tokens
from .ledger import BudgetLedger, Level, Refusal, Reservation
from .limits import BudgetLimits, RunPolicy
from .reconciler import Reconciler

__all__ = [
    "BudgetExceededError",
    "BudgetLedger",
    "BudgetLimits",
    "CallBudget",
    "Level",
    "Reconciler",
    "Refusal",
    "Reservation",
    "RunPolicy",
    "estimate_prompt_tokens",
]
