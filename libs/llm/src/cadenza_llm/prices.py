"""What a call cost, from a configurable table of USD per million tokens."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .settings import Price
from .types import Usage

log = logging.getLogger("cadenza.llm.prices")

# USD per 1M tokens (OpenAI list prices, standard tier). Keys are "provider:model" or
# "provider:*"; override or extend with CADENZA_LLM_PRICES. The embedded model is free.
DEFAULT_PRICES: dict[str, Price] = {
    "local:*": Price(input_per_mtok=0, output_per_mtok=0),
    "replay:*": Price(input_per_mtok=0, output_per_mtok=0),
    "openai:gpt-4o": Price(input_per_mtok=2.50, output_per_mtok=10.00),
    "openai:gpt-4o-mini": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "openai:gpt-4.1": Price(input_per_mtok=2.00, output_per_mtok=8.00),
    "openai:gpt-4.1-mini": Price(input_per_mtok=0.40, output_per_mtok=1.60),
    "openai:gpt-4.1-nano": Price(input_per_mtok=0.10, output_per_mtok=0.40),
    "openai:o4-mini": Price(input_per_mtok=1.10, output_per_mtok=4.40),
    "openai:gpt-3.5-turbo": Price(input_per_mtok=0.50, output_per_mtok=1.50),
}


class PriceTable:
    """Looks up ``provider:model``, then ``provider:*``. Unknown models cost 0 (and say so once
    in the log), so a missing price never fails a run."""

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self.prices: dict[str, Price] = {**DEFAULT_PRICES, **(overrides or {})}
        self._warned: set[str] = set()

    def price(self, provider: str, model: str) -> Price | None:
        return self.prices.get(f"{provider}:{model}") or self.prices.get(f"{provider}:*")

    def cost(self, provider: str, model: str, usage: Usage) -> float:
        """USD for ``usage`` on ``provider:model`` (use the response's provider and model)."""
        price = self.price(provider, model)
        if price is None:
            spec = f"{provider}:{model}"
            if spec not in self._warned:
                self._warned.add(spec)
                log.warning(
                    "no price for %s; counting its cost as 0 (set CADENZA_LLM_PRICES)", spec
                )
            return 0.0
        return (
            usage.input_tokens * price.input_per_mtok + usage.output_tokens * price.output_per_mtok
        ) / 1_000_000
