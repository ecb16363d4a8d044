"""Refuses request bodies holding a NUL character (U+0000) in any string, with a 422 naming
the field. PostgreSQL cannot store U+0000 in text or JSONB, so such a value failed deep in
the database as a 500; SQLite stored it, so the two stacks disagreed. Checked once, here,
for every JSON and YAML body, before any route reads it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cadenza_workflow.loading import load_document
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import FieldProblem, Problem, ProblemError, problem_response

_NUL_MARKERS = (b"\x00", b"\\u0000", b"\\0", b"\\x00")  # raw, JSON escape, YAML escapes


def nul_paths(value: Any, path: str = "") -> Iterator[str]:
    """Where strings (or keys) hold U+0000, as `a.b[2]` paths."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                yield where
            yield from nul_paths(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_paths(item, f"{path}[{index}]")


class NulCharacterMiddleware:
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
        fields = self._nul_fields(body, content_type)
        if fields:
            state = scope.get("state", {})
            problem = Problem(
                type="urn:cadenza:problem:invalid-request",
                title="Invalid request",
                status=422,
                detail="NUL characters (U+0000) are not accepted in text",
                instance=scope.get("path"),
                request_id=state.get("request_id"),
                errors=[
                    FieldProblem(
                        field=field,
                        code="nul_character",
                        message=f"field {field or '(body)'}: contains a NUL character (U+0000)",
                    )
                    for field in fields[:20]
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
    def _nul_fields(body: bytes, content_type: str) -> list[str]:
        if not any(marker in body for marker in _NUL_MARKERS):
            return []  # the common case: no parse
        try:
            document = load_document(body, content_type)
        except Exception:  # malformed: the route's own parser reports it
            return []
        return list(nul_paths(document))
