"""Query and path parameter types that take only their canonical text.

Query strings are text, so pydantic's lax mode parses them generously: `limit=5.0` and
`limit=5_0` (as 50) passed as integers, `until=0.5` as a Unix timestamp, `replace=yes` as
true. The OpenAPI document promises an integer, an RFC 3339 date-time and `true`/`false`;
a client that sends anything else made a mistake, and guessing what it meant hides it.
Each type here refuses such text with a 422 naming the parameter (`query.limit`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BeforeValidator

_INTEGER = re.compile(r"-?\d{1,19}")
# A calendar date first (what RFC 3339 and ISO 8601 start with); pydantic reads the rest.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}([Tt ].*)?", re.DOTALL)


def _integer_text(value: Any) -> Any:
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        if _INTEGER.match(value) and value.lstrip("-").isdigit():
            raise ValueError("must be an integer of at most 19 digits")
        raise ValueError("must be an integer written in decimal digits, e.g. 20")
    return value


def _date_time_text(value: Any) -> Any:
    if isinstance(value, str) and not _DATE_TIME.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time, e.g. 2026-12-04T10:00:00Z")
    return value


def _boolean_text(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value == "true"
    return value


# Markers to put AFTER the Query()/Path() in Annotated (``Annotated[int, Query(ge=1),
# INTEGER_TEXT]``): FastAPI renders the constraints as JSON Schema only in that order.
#: ``limit=20``; not ``20.0``, ``2_0`` or `` 20``.
INTEGER_TEXT = BeforeValidator(_integer_text)
#: ``since=2026-12-04T10:00:00Z``; not a Unix timestamp such as ``0.5``.
DATE_TIME_TEXT = BeforeValidator(_date_time_text)
#: ``replace=true`` / ``replace=false``; not ``1``, ``yes`` or ``on``.
BOOLEAN_TEXT = BeforeValidator(_boolean_text)
