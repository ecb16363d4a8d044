"""Refuses request bodies holding a value that cannot be stored and read back, with a 422
naming each field. Checked once, here, for every JSON and YAML body, before any route reads it:

- a NUL character (U+0000) in any string or key: PostgreSQL cannot store U+0000 in text or
  JSON, so such a value failed deep in the database as a 500; SQLite stored it, so the two
  stacks disagreed;
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
    rb"|\d[eE]\+?\d{3}|\d{300}"
)

NUL_CHARACTER = "nul_character"
NOT_FINITE = "non_finite_number"


def unstorable_values(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(path, code)`` of each string or key holding U+0000 and each number that is not a
    finite double, with `a.b[2]` paths."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path, NUL_CHARACTER
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield path, NOT_FINITE
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                yield where, NUL_CHARACTER
            yield from unstorable_values(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable_values(item, f"{path}[{index}]")


def _message(field: str, code: str) -> str:
    if code == NUL_CHARACTER:
        return f"field {field or '(body)'}: contains a NUL character (U+0000)"
    return (
        f"field {field or '(body)'}: not a finite number (NaN, Infinity and literals beyond "
        "a double's range such as 1e400 are not JSON values)"
    )


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
