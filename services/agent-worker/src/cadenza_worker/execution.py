"""One task attempt = up to `max_attempts` tries, each under `timeout_s`, with exponential
backoff + jitter between retryable failures (tenacity). Outcomes are returned as data;
only cancellation escapes as an exception."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from cadenza_events import TaskError, TaskReady
from cadenza_workflow import RetryPolicy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from .errors import StoreUnavailable, TaskTimeoutError, should_retry, to_task_error

Status = Literal["succeeded", "failed", "cancelled"]
RetryHook = Callable[[int, BaseException, float], None]
"""(failed try number, its error, seconds until the next try)"""


@dataclass(frozen=True)
class Outcome:
    status: Status
    tries: int
    output: Any = None
    error: TaskError | None = None


@dataclass
class Progress:
    """Tries made so far; readable even when the attempt is cancelled mid-way."""

    tries: int = 0


class wait_spec_backoff(wait_base):  # tenacity names its waits in lower case
    """The delay the workflow spec documents (`RetryPolicy.delay_s`): after try n,
    ``min(max_backoff_s, initial_backoff_s * multiplier ** (n - 1))``, scaled to a random
    50-100% when ``jitter`` is on."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        multiplier: float = 2.0,
        jitter: bool = True,
        tries_before: int = 0,
    ) -> None:
        self._tries_before = tries_before  # tries made before tenacity took over
        # model_construct: the values were validated with the spec; never refuse to retry here.
        self._policy = RetryPolicy.model_construct(
            initial_backoff_s=max(0.0, initial_s),
            max_backoff_s=max(0.0, initial_s, max_s),
            multiplier=max(1.0, multiplier),
            jitter=jitter,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.after_try(retry_state.attempt_number + self._tries_before)

    def after_try(self, number: int) -> float:
        return self._policy.delay_s(number)


async def run_with_retries(
    task: TaskReady,
    try_once: Callable[[int], Awaitable[Any]],
    progress: Progress,
    on_retry: RetryHook | None = None,
) -> Outcome:
    """Call ``try_once(try_number)`` until it succeeds, fails for good, or tries run out.

    The first try runs on its own: most succeed, and tenacity's machinery cost about a
    twentieth of a no-op task's CPU. Only a retryable failure hands the rest to tenacity."""
    timeout_s = max(task.timeout_s, 0.001)
    progress.tries += 1
    try:
        return Outcome("succeeded", progress.tries, output=await _one_try(try_once, 1, timeout_s))
    except (asyncio.CancelledError, StoreUnavailable):
        raise  # a platform store away: the message waits for it (the bus retries it)
    except Exception as exc:
        if task.max_attempts <= 1 or not should_retry(exc):
            return Outcome("failed", progress.tries, error=to_task_error(exc))
        backoff = wait_spec_backoff(
            task.initial_backoff_s,
            task.max_backoff_s,
            task.backoff_multiplier,
            task.jitter,
            tries_before=1,
        )
        delay_s = backoff.after_try(1)
        if on_retry is not None:
            on_retry(1, exc, delay_s)
    await asyncio.sleep(delay_s)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            exc = state.outcome.exception()
            if exc is not None:
                on_retry(state.attempt_number + 1, exc, state.next_action.sleep)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(task.max_attempts - 1),
        wait=backoff,
        # should_retry excludes CancelledError: `with attempt:` captures BaseException, and
        # only a predicate that refuses it makes tenacity re-raise the cancellation.
        retry=retry_if_exception(should_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    output: Any = None
    try:
        async for attempt in retrying:
            with attempt:
                progress.tries += 1
                output = await _one_try(try_once, progress.tries, timeout_s)
    except (asyncio.CancelledError, StoreUnavailable):
        raise
    except Exception as exc:
        return Outcome("failed", progress.tries, error=to_task_error(exc))
    return Outcome("succeeded", progress.tries, output=output)


async def _one_try(try_once: Callable[[int], Awaitable[Any]], number: int, timeout_s: float) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await try_once(number)
    except TimeoutError as exc:
        raise TaskTimeoutError(f"try {number} timed out after {timeout_s:g}s") from exc
