"""Opaque cursors for keyset pagination: clients pass back ``next_cursor`` unchanged."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from .problems import FieldProblem, InvalidCursor

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


def encode_cursor(*position: Any) -> str:
    """Encode a sort position (datetimes as ISO strings) as URL-safe text."""
    raw = json.dumps(
        [p.isoformat() if isinstance(p, datetime) else p for p in position],
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(cursor) from exc
    if not isinstance(value, list):
        raise _invalid(cursor)
    return value


def _invalid(cursor: str) -> InvalidCursor:
    msg = "field query.cursor: not a cursor this API issued; pass next_cursor back unchanged"
    return InvalidCursor(
        f"invalid cursor {cursor[:40]!r}",
        errors=[FieldProblem(field="query.cursor", code="invalid_field", message=msg)],
    )


def decode_time_id_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of the last item of the previous page."""
    value = _decode(cursor)
    try:
        at, ident = value
        when = datetime.fromisoformat(at)
    except (TypeError, ValueError) as exc:
        raise _invalid(cursor) from exc
    if when.tzinfo is None or not isinstance(ident, str):
        raise _invalid(cursor)
    return when.astimezone(UTC), ident


def decode_name_cursor(cursor: str) -> str:
    value = _decode(cursor)
    if len(value) != 1 or not isinstance(value[0], str):
        raise _invalid(cursor)
    return str(value[0])


def decode_call_cursor(cursor: str) -> tuple[datetime, int, str]:
    """``(at, source rank, id)`` of the last call of the previous page."""
    value = _decode(cursor)
    try:
        at, rank, ident = value
        when = datetime.fromisoformat(at)
    except (TypeError, ValueError) as exc:
        raise _invalid(cursor) from exc
    if when.tzinfo is None or not isinstance(rank, int) or not isinstance(ident, str):
        raise _invalid(cursor)
    return when.astimezone(UTC), rank, ident
