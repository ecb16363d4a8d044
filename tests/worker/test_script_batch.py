"""The claim/finish script calls of one turn of the event loop share one Redis pipeline,
and each caller still gets its own reply or its own error (real Redis and fakeredis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from cadenza_runtime import keys
from cadenza_state import HotState
from cadenza_worker.lease import Claim, TaskClaims
from cadenza_worker.script_batch import ScriptBatch
from redis.exceptions import ResponseError
from support.cleanup import prefixed_hot_state

ECHO = "return {KEYS[1], ARGV[1]}"
FAILS_ON_A_LIST = "return redis.call('get', KEYS[1])"  # WRONGTYPE on a list key


@pytest_asyncio.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def hot(
    request: pytest.FixtureRequest, require_services: Callable[..., None], unique_id: str
) -> AsyncIterator[HotState]:
    if request.param == "redis":
        require_services("redis")
    async with prefixed_hot_state(request.param, f"t:{unique_id}:") as state:
        yield state


def _count_pipelines(hot: HotState, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    real = hot.redis.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        sent.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hot.redis, "pipeline", pipeline)
    return sent


async def test_calls_of_one_turn_share_a_pipeline_and_get_their_own_replies(
    hot: HotState, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = ScriptBatch(hot.redis)
    echo = hot.redis.register_script(ECHO)
    await hot.redis.script_load(ECHO)
    sent = _count_pipelines(hot, monkeypatch)
    replies = await asyncio.gather(*(batch.call(echo, [f"k{i}"], [i]) for i in range(50)))
    assert replies == [[f"k{i}".encode(), str(i).encode()] for i in range(50)]
    assert len(sent) == 1
    # A later turn with one call: its own round trip, a plain EVALSHA with no pipeline.
    assert await batch.call(echo, ["alone"], ["x"]) == [b"alone", b"x"]
    assert len(sent) == 1


async def test_an_error_reply_fails_only_its_own_call(hot: HotState) -> None:
    batch = ScriptBatch(hot.redis)
    get = hot.redis.register_script(FAILS_ON_A_LIST)
    await hot.redis.rpush(hot.key("a-list"), "x")
    await hot.redis.set(hot.key("a-string"), "v")
    ok, bad = await asyncio.gather(
        batch.call(get, [hot.key("a-string")], []),
        batch.call(get, [hot.key("a-list")], []),
        return_exceptions=True,
    )
    assert ok == b"v"
    assert isinstance(bad, ResponseError)
    assert "WRONGTYPE" in str(bad)


async def test_scripts_redis_forgot_are_loaded_and_sent_again(hot: HotState) -> None:
    batch = ScriptBatch(hot.redis)
    echo = hot.redis.register_script(ECHO)
    await hot.redis.script_flush()  # what a Redis restart does
    assert await asyncio.gather(batch.call(echo, ["a"], [1]), batch.call(echo, ["b"], [2])) == [
        [b"a", b"1"],
        [b"b", b"2"],
    ]
    await hot.redis.script_flush()
    assert await batch.call(echo, ["lone"], [3]) == [b"lone", b"3"]  # a call alone, too


async def test_an_error_reply_fails_a_lone_call_and_the_next_one_works(hot: HotState) -> None:
    batch = ScriptBatch(hot.redis)
    get = hot.redis.register_script(FAILS_ON_A_LIST)
    await hot.redis.script_load(FAILS_ON_A_LIST)
    await hot.redis.rpush(hot.key("a-list"), "x")
    await hot.redis.set(hot.key("a-string"), "v")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await batch.call(get, [hot.key("a-list")], [])
    assert await batch.call(get, [hot.key("a-string")], []) == b"v"


async def test_a_cancelled_caller_leaves_the_others_their_replies(hot: HotState) -> None:
    batch = ScriptBatch(hot.redis)
    echo = hot.redis.register_script(ECHO)
    await hot.redis.script_load(ECHO)
    first = asyncio.create_task(batch.call(echo, ["a"], [1]))
    second = asyncio.create_task(batch.call(echo, ["b"], [2]))
    await asyncio.sleep(0)  # both queued in this turn
    first.cancel()
    assert await second == [b"b", b"2"]
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_concurrent_claims_each_get_their_answer(
    hot: HotState, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims = TaskClaims(hot, "w1", marker_ttl_s=60, heartbeat_ttl_s=6)
    other = TaskClaims(hot, "w2", marker_ttl_s=60, heartbeat_ttl_s=6)
    assert await other.claim("held", 1, "r") is Claim.STARTED
    await claims.finish("done", 1, "succeeded")
    await hot.redis.set(hot.key(keys.run_cancelled("rc")), "1")
    sent = _count_pipelines(hot, monkeypatch)
    answers = await asyncio.gather(
        claims.claim("new", 1, "r"),
        claims.claim("held", 1, "r"),
        claims.claim("done", 1, "r"),
        claims.claim("stopped", 1, "rc"),
        *(claims.claim(f"t{i}", 1, "r") for i in range(20)),
    )
    assert answers[:4] == [Claim.STARTED, Claim.HELD, Claim.DONE, Claim.CANCELLED]
    assert set(answers[4:]) == {Claim.STARTED}
    assert len(sent) == 1
