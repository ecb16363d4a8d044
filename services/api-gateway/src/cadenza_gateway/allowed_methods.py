"""The ``Allow`` header of a 405: every method some route serves on that path.

Starlette answers a 405 with the methods of the *first* route whose path matched, but one
path is often served by several routes (``GET /v1/runs`` and ``POST /v1/runs`` are two), so
``OPTIONS /v1/runs`` said ``Allow: POST``. The union over all routes is what RFC 9110 means."""

from __future__ import annotations

import re
from functools import lru_cache

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    allowed: set[str] = set()
    for pattern, methods in _route_patterns(app):
        if pattern.match(path):
            allowed |= methods
    if "GET" in allowed:
        allowed.add("HEAD")
    return sorted(allowed)


@lru_cache(maxsize=8)  # one entry per app: routes are fixed once the app serves
def _route_patterns(app: FastAPI) -> tuple[tuple[re.Pattern[str], frozenset[str]], ...]:
    out = []
    for route in iter_route_contexts(app.routes):
        if route.path and route.methods:
            regex, _format, _convertors = compile_path(str(route.path))
            out.append((regex, frozenset(route.methods)))
    return tuple(out)
