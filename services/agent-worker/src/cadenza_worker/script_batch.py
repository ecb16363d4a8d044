"""Redis script calls made in one turn of the event loop, sent together in ONE pipeline.

A worker takes a fetch of ``task.ready`` messages at once: its claims (and, a moment later,
its finishes) are called by many tasks in the same turn of the loop. Sent one by one, each
is a round trip with its own connection checkout, write and wake-up — in the profile of a
5,000-task fan-out, a quarter of the worker's event-loop time, and most of Redis' own CPU.
Here they wait for the end of the turn and go as one pipeline (``EVALSHA`` each, no
transaction: the scripts are atomic one by one, as before); every caller gets its own reply
or its own error. A Redis restart forgets loaded scripts: the calls it refused with
``NOSCRIPT`` are sent again after loading them, once.

A turn with ONE call (a chain's step, a lone task at low load) sends a plain ``EVALSHA``:
a pipeline's object, its buffered commands and its reply list cost ~45 µs of CPU per call
on top (bench/worker_step.py: a lone no-op task 773 → 687 µs of the worker's CPU).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from . import metrics


@dataclass(frozen=True, slots=True)
class _Call:
    script: AsyncScript
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    reply: asyncio.Future[Any]


class ScriptBatch:
    """``await batch.call(script, keys, args)``: the script's reply, sent with the calls
    other tasks made in the same turn of the event loop."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)  # after the callbacks of this turn: they join
        reply: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Call(script, tuple(keys), tuple(args), reply))
        return await reply

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        calls = [c for c in calls if not c.reply.done()]  # callers cancelled meanwhile
        if not calls:
            return
        sending = asyncio.create_task(self._send(calls), name="redis-script-batch")
        self._sending.add(sending)  # keep a reference until it is done
        sending.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        metrics.SCRIPT_BATCH_CALLS.observe(len(calls))
        try:
            replies = await self._replies(calls)
            refused = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if refused:  # Redis lost its scripts (a restart): load them, send those again
                for script in {calls[i].script for i in refused}:
                    await self._redis.script_load(script.script)
                again = await self._replies([calls[i] for i in refused])
                for i, reply in zip(refused, again, strict=True):
                    replies[i] = reply
        except BaseException as exc:  # the connection, an outage, a cancelled stop: all fail
            for call in calls:
                if not call.reply.done():
                    call.reply.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for call, reply in zip(calls, replies, strict=True):
            if call.reply.done():
                continue
            if isinstance(reply, Exception):
                call.reply.set_exception(reply)
            else:
                call.reply.set_result(reply)

    async def _replies(self, calls: Sequence[_Call]) -> list[Any]:
        """Each call's reply, an error reply (``NOSCRIPT``, ``WRONGTYPE``…) in its place
        as a value; a lost connection raises, for all of them."""
        if len(calls) > 1:
            return await self._pipeline(calls)
        (call,) = calls
        try:
            return [
                await self._redis.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            ]
        except ResponseError as error:  # a reply, as the pipeline returns it
            return [error]

    async def _pipeline(self, calls: Sequence[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                # EVALSHA directly: a script registered with the pipeline would make it ask
                # SCRIPT EXISTS first, a second round trip on every batch.
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))
