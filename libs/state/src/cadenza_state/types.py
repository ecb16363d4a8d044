"""Portable column types: JSON and timezone-aware UTC timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
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


#: JSON leaves: nothing to reorder inside them (checked by exact type: no call per leaf).
_LEAVES = frozenset({str, int, float, bool, type(None)})


def _jsonb_key(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def in_jsonb_key_order(value: Any) -> Any:
    """``value`` with every object's keys in the order ``jsonb`` keeps them (shorter keys
    first, then bytewise): as a document written by the PostgreSQL engines reads back."""
    if isinstance(value, dict):
        keys: list[str] = list(value)
        if len(keys) > 1 and all(type(k) is str for k in keys):
            if "".join(keys).isascii():
                # Two C-level stable sorts = (length, text); for ASCII that is (byte
                # length, bytes). A Python key function per key cost most of a plan's time.
                keys = sorted(sorted(keys), key=len)
            else:
                keys = sorted(keys, key=_jsonb_key)
        return {
            k: v if type(v) in _LEAVES else in_jsonb_key_order(v) for k in keys for v in (value[k],)
        }
    if isinstance(value, list | tuple):
        return [v if type(v) in _LEAVES else in_jsonb_key_order(v) for v in value]
    return value


def dumps_in_jsonb_key_order(value: Any) -> str:
    """JSON text with every object's keys in the order ``jsonb`` kept them (shorter keys
    first, then bytewise): the PostgreSQL engines' JSON serializer. Documents moved from
    ``jsonb`` to ``json`` (0012) for their numbers, not for a new key order: what readers
    got back (and so what an agent's prompt, rendered from specs and outputs, looks like)
    stays as it was. ``cadenza dev``'s SQLite keeps insertion order, as it always did.

    orjson writes it (a plan of 10,000 tasks serialises 20,000 documents); what orjson
    refuses — integers beyond 64 bits, non-string keys — goes through the standard library,
    which writes every number exactly too."""
    try:
        if type(value) is list and b"{" not in (text := orjson.dumps(value)):
            return text.decode()  # no object anywhere (an outbox row's headers): as it is
        return orjson.dumps(in_jsonb_key_order(value)).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(in_jsonb_key_order(value))


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
