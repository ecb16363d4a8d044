"""The retry loop on its own: tries, backoff, timeouts, and cancellation never retried."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from cadenza_events import NonRetryableError, RetryableError
from cadenza_worker import Progress, run_with_retries, to_task_error, wait_spec_backoff
from tenacity import RetryCallState
from worker_support import retry_task

task = retry_task


async def test_retryable_errors_are_retried_until_success() -> None:
    seen: list[tuple[int, str, float]] = []

    async def once(n: int) -> Any:
        if n < 3:
            raise RetryableError(f"boom {n}", code="flaky_failure")
        return {"n": n}

    progress = Progress()
    outcome = await run_with_retries(
        task(), once, progress, lambda n, e, d: seen.append((n, to_task_error(e).code, d))
    )
    assert (outcome.status, outcome.tries, outcome.output) == ("succeeded", 3, {"n": 3})
    assert [(n, code) for n, code, _ in seen] == [(1, "flaky_failure"), (2, "flaky_failure")]
    assert progress.tries == 3


async def test_retries_stop_after_max_attempts() -> None:
    async def once(n: int) -> Any:
        raise RetryableError("still down", code="down")

    outcome = await run_with_retries(task(max_attempts=4), once, Progress())
    assert (outcome.status, outcome.tries) == ("failed", 4)
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.retryable) == ("down", True)


async def test_non_retryable_errors_fail_at_once() -> None:
    async def once(n: int) -> Any:
        raise NonRetryableError("bad input", code="invalid_params")

    outcome = await run_with_retries(task(max_attempts=5), once, Progress())
    assert (outcome.status, outcome.tries) == ("failed", 1)
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.retryable) == ("invalid_params", False)


async def test_unexpected_exceptions_are_retried_as_tool_errors() -> None:
    async def once(n: int) -> Any:
        raise KeyError("missing")

    outcome = await run_with_retries(task(max_attempts=2), once, Progress())
    assert (outcome.status, outcome.tries) == ("failed", 2)
    assert outcome.error is not None
    assert outcome.error.code == "tool_error"
    assert "KeyError" in outcome.error.message


async def test_each_try_times_out_as_a_retryable_timeout() -> None:
    async def once(n: int) -> Any:
        await asyncio.sleep(10)

    started = time.monotonic()
    outcome = await run_with_retries(task(timeout_s=0.05, max_attempts=2), once, Progress())
    assert time.monotonic() - started < 2
    assert (outcome.status, outcome.tries) == ("failed", 2)
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.retryable) == ("timeout", True)


async def test_cancellation_is_never_retried_nor_swallowed() -> None:
    calls = 0
    started = asyncio.Event()

    async def once(n: int) -> Any:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.sleep(30)

    progress = Progress()
    job = asyncio.create_task(run_with_retries(task(max_attempts=5), once, progress))
    await started.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert calls == 1
    assert progress.tries == 1


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (4, 2.5, 5.0), (10, 2.5, 5.0)],
)
def test_backoff_follows_the_spec_formula(attempt: int, low: float, high: float) -> None:
    wait = wait_spec_backoff(initial_s=1.0, max_s=5.0)
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    for _ in range(50):
        assert low <= wait(state) <= high


async def test_spec_multiplier_and_jitter_set_the_delays() -> None:
    """retry.multiplier 3 without jitter: exactly 0.001, 0.003, 0.009 s between tries."""
    delays: list[float] = []

    async def always(n: int) -> Any:
        raise RetryableError(f"boom {n}", code="flaky_failure")

    outcome = await run_with_retries(
        task(
            max_attempts=4,
            initial_backoff_s=0.001,
            max_backoff_s=1.0,
            backoff_multiplier=3.0,
            jitter=False,
        ),
        always,
        Progress(),
        lambda n, e, d: delays.append(d),
    )
    assert outcome.status == "failed"
    assert delays == pytest.approx([0.001, 0.003, 0.009])


def test_jitter_off_gives_the_exact_delay_and_on_varies_it() -> None:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = 3
    exact = wait_spec_backoff(initial_s=1.0, max_s=100.0, multiplier=4.0, jitter=False)
    assert {exact(state) for _ in range(20)} == {16.0}
    jittered = wait_spec_backoff(initial_s=1.0, max_s=100.0, multiplier=4.0, jitter=True)
    seen = {jittered(state) for _ in range(50)}
    assert len(seen) > 1
    assert all(8.0 <= d <= 16.0 for d in seen)


async def test_the_journal_being_away_is_not_a_task_failure() -> None:
    """The effect journal's database down: the attempt is not failed nor retried inside —
    the error escapes so the bus holds the task.ready until the database is back."""
    from cadenza_worker.errors import JournalUnavailable

    calls = 0

    async def once(n: int) -> Any:
        nonlocal calls
        calls += 1
        raise JournalUnavailable("effect journal unreachable: connection refused")

    with pytest.raises(JournalUnavailable):
        await run_with_retries(task(max_attempts=5), once, Progress())
    assert calls == 1


async def test_journal_turns_a_database_outage_into_journal_unavailable() -> None:
    from cadenza_worker.errors import JournalUnavailable
    from cadenza_worker.journal import EffectJournal
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    dead = create_async_engine("postgresql+asyncpg://cadenza@127.0.0.1:1/cadenza")
    journal = EffectJournal(async_sessionmaker(dead))
    with pytest.raises(JournalUnavailable):
        await journal.lookup("t", 0)
    with pytest.raises(JournalUnavailable):
        await journal.record("t", 0, "flaky", {"calls": 1})
    await dead.dispose()
