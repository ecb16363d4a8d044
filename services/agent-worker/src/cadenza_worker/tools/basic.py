"""Small deterministic tools: transform, noop, sleep and flaky (for retry testing)."""

from __future__ import annotations

import asyncio
from typing import Any

from cadenza_events import RetryableError
from pydantic import BaseModel, ConfigDict, Field

from ..errors import parse_params
from .base import ToolContext

_FLAKY_COUNTER_TTL_S = 86_400


class TransformTool:
    """Returns its params (the spec's `with`, already rendered by the orchestrator)."""

    name = "transform"
    side_effects = False

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        return params


class NoopTool:
    """Does nothing and returns `{}`: measures the platform's own overhead (benchmarks)."""

    name = "noop"
    side_effects = False

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        return {}


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=86_400, description="How long to sleep.")


class SleepTool:
    """Sleeps `seconds` (cancellable at any moment) and returns `{"slept_s": seconds}`."""

    name = "sleep"
    side_effects = False

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        p: SleepParams = parse_params(SleepParams, params, self.name)
        await asyncio.sleep(p.seconds)
        return {"slept_s": p.seconds}


class FlakyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failures: int = Field(default=1, ge=0, le=1_000_000, description="Calls that fail first.")
    key: str | None = Field(
        default=None, min_length=1, max_length=512, description="Counter name (default: task)"
    )


class FlakyTool:
    """Fails with a retryable error for the first `failures` calls counted under `key`
    (a Redis counter shared by every worker), then returns `{"calls": n}`."""

    name = "flaky"
    side_effects = True
    idempotent = True  # its only effect is a counter of tries

    async def __call__(self, params: dict[str, Any], ctx: ToolContext) -> Any:
        p: FlakyParams = parse_params(FlakyParams, params, self.name)
        key = p.key if p.key is not None else f"task:{ctx.task_id}"
        calls = await ctx.hot.incr_counter(f"tool:flaky:{key}", 1, ttl_s=_FLAKY_COUNTER_TTL_S)
        if calls <= p.failures:
            raise RetryableError(
                f"flaky: call {calls} of key {key!r} fails ({p.failures} failure(s) configured)",
                code="flaky_failure",
            )
        return {"calls": calls}
