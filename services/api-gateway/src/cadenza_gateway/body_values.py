"""Refuses request bodies holding a value that cannot be stored and read back, with a 422
naming each field. Checked once, here, for every JSON and YAML body, before any route reads it:

- a NUL character (U+0000) in any string or key: PostgreSQL cannot store U+0000 in text or
  JSON, so such a value failed deep in the database as a 500; SQLite stored it, so the two
  stacks disagreed;
- a lone UTF-16 surrogate (`"\\ud800"` without its pair), in a string or a key: JSON's
  escapes let a client send one, but it is not a Unicode character, so it cannot be encoded
  as UTF-8 for PostgreSQL, Kafka or an answer (a 500, or a run whose spec could not be read
  back); control characters (U+0001 to U+001F, U+007F to U+009F) are valid and stored as sent;
- a number that is not a finite double: `NaN`, `Infinity` (JSON extensions Python's reader
  accepts), YAML's `.inf`/`.nan`, or a literal beyond a double's range (`1e400` parses as
  infinity). No JSON reader takes these back; some routes turned them into `null`, others
  into a 500 when the answer was written."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from cadenza_workflow.loading import load_document
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import FieldProblem, Problem, ProblemError, problem_response

# Text that may hold such a value; only a body holding one is parsed here (a false alarm
# costs one parse). NUL: raw, JSON escape, YAML escapes. Non-finite: JSON's NaN/Infinity,
# YAML's .inf/.nan, an exponent of three digits or more, a run of 300 digits.
_MARKERS = re.compile(
    rb"\x00|\\u0000|\\0|\\x00|NaN|Infinity|\.(?:nan|NaN|NAN|inf|Inf|INF)"
    rb"|\d[eE]\+?\d{3}|\d{300}|\\(?:u|U0000)[dD][89a-fA-F]"
)

NUL_CHARACTER = "nul_character"
LONE_SURROGATE = "lone_surrogate"
NOT_FINITE = "non_finite_number"


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL_CHARACTER
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return LONE_SURROGATE
    return None


def unstorable_values(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(path, code)`` of each string or key holding U+0000 or a lone surrogate and each
    number that is not a finite double, with `a.b[2]` paths."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            yield path, problem
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield path, NOT_FINITE
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key) if isinstance(key, str) else None
            if problem == LONE_SURROGATE:  # the field name must be sendable in the answer
                key = key.encode("utf-8", "backslashreplace").decode("utf-8")
            where = f"{path}.{key}" if path else str(key)
            if problem:
                yield where, problem
            yield from unstorable_values(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_values(item, f"{path}[{index}]")


def describe(code: str) -> str:
    """What is wrong with a value :func:`unstorable_values` reported with ``code``."""
    if code == NUL_CHARACTER:
        return "contains a NUL character (U+0000)"
    if code == LONE_SURROGATE:
        return (
            "contains a lone UTF-16 surrogate (\\ud800-\\udfff without its pair), which is "
            "not a Unicode character"
        )
    return (
        "not a finite number (NaN, Infinity and literals beyond a double's range such as "
        "1e400 are not JSON values)"
    )


def _message(field: str, code: str) -> str:
    return f"field {field or '(body)'}: {describe(code)}"


class StorableValuesMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)  # lifespan and websockets have no body
            return
        content_type = Headers(scope=scope).get("content-type", "").lower()
        if not ("json" in content_type or "yaml" in content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        try:
            while True:  # the body limit middleware (outside this one) caps what arrives
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except ProblemError as exc:  # e.g. the body grew past the limit: its own problem
            state = scope.get("state", {})
            problem = exc.to_problem(scope.get("path"), state.get("request_id"))
            await problem_response(problem)(scope, receive, send)
            return
        body = b"".join(chunks)
        fields = self._unstorable(body, content_type)
        if fields:
            state = scope.get("state", {})
            problem = Problem(
                type="urn:cadenza:problem:invalid-request",
                title="Invalid request",
                status=422,
                detail="the body holds values that cannot be stored: "
                + ", ".join(sorted({code for _, code in fields})),
                instance=scope.get("path"),
                request_id=state.get("request_id"),
                errors=[
                    FieldProblem(field=field, code=code, message=_message(field, code))
                    for field, code in fields[:20]
                ],
            )
            await problem_response(problem)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _unstorable(body: bytes, content_type: str) -> list[tuple[str, str]]:
        if not _MARKERS.search(body):
            return []  # the common case: no parse
        try:
            document = load_document(body, content_type)
        except Exception:  # malformed: the route's own parser reports it
            return []
        return list(unstorable_values(document))
