"""Portable column types: JSON and timezone-aware UTC timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: ``json`` (the text as written) on PostgreSQL, JSON text elsewhere. Not ``jsonb``: JSONB
#: stores numbers as ``numeric``, so ``1e308`` came back as a 309-digit integer and ``-0.0``
#: as ``0.0``; what a client stores (run inputs and outputs, specs, dataset records) must
#: come back as it sent it. Nothing queries inside these documents (no JSONB operator or
#: index; migration 0012_json_numbers). Python ``None`` is stored as SQL NULL so
#: ``IS NULL`` filters work on nullable JSON columns.
JSONType = JSON(none_as_null=True)


def _in_jsonb_key_order(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _in_jsonb_key_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [_in_jsonb_key_order(v) for v in value]
    return value


def dumps_in_jsonb_key_order(value: Any) -> str:
    """JSON text with every object's keys in the order ``jsonb`` kept them (shorter keys
    first, then bytewise): the PostgreSQL engines' JSON serializer. Documents moved from
    ``jsonb`` to ``json`` (0012) for their numbers, not for a new key order: what readers
    got back (and so what an agent's prompt, rendered from specs and outputs, looks like)
    stays as it was. ``cadenza dev``'s SQLite keeps insertion order, as it always did."""
    return json.dumps(_in_jsonb_key_order(value))


#: 64-bit autoincrement key; SQLite only autoincrements an ``INTEGER PRIMARY KEY``.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; on SQLite (no zone support) stored as UTC and
    returned tz-aware, so callers see the same values on both backends."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value is ambiguous (local time? UTC?); refuse instead of guessing.
            raise ValueError("naive datetime; pass a timezone-aware value (e.g. datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
