"""The claim-check marker of a recorded call body: a JSON body too large for its row is
stored in the object store and the row keeps ``{"claim_check": key, "bytes": n}``. Writers
(the agent worker's call accounting) and readers (the gateway's call inspection) share it."""

from __future__ import annotations

import json
from typing import Any

from cadenza_state.objects import ObjectNotFound, ObjectStore

MARKER = "claim_check"


def marker(key: str, size: int) -> dict[str, Any]:
    return {MARKER: key, "bytes": size}


def marker_key(value: Any) -> str | None:
    """The object key if ``value`` is a claim-check marker, else None."""
    if isinstance(value, dict) and set(value) == {MARKER, "bytes"}:
        key = value[MARKER]
        return key if isinstance(key, str) else None
    return None


async def store_body(objects: ObjectStore, key: str, value: Any, threshold: int) -> Any:
    """``value`` itself when its JSON fits in ``threshold`` bytes, else a marker of the
    object it was stored as."""
    data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    if len(data) <= threshold:
        return value
    await objects.put(key, data, "application/json")
    return marker(key, len(data))


async def load_body(objects: ObjectStore, value: Any) -> Any:
    """``value`` with a claim-check marker replaced by the stored body (a vanished object
    leaves the marker, with ``missing: true``)."""
    key = marker_key(value)
    if key is None:
        return value
    try:
        return json.loads(await objects.get(key))
    except ObjectNotFound:
        return {**value, "missing": True}
