"""Documents keep jsonb's key order on PostgreSQL after the move to ``json`` (0012)."""

from __future__ import annotations

import json

import pytest
from cadenza_state.types import dumps_in_jsonb_key_order

pytestmark = pytest.mark.unit


def test_keys_in_jsonb_order_numbers_as_written() -> None:
    doc = {"properties": {"resolved": 1, "reply": -0.0}, "type": "x", "é": [{"bb": 1e308, "a": 2}]}
    text = dumps_in_jsonb_key_order(doc)
    # Shorter keys first (in UTF-8 bytes: "é" is two), then bytewise, at every depth.
    assert list(json.loads(text)) == ["é", "type", "properties"]
    assert list(json.loads(text)["properties"]) == ["reply", "resolved"]
    assert list(json.loads(text)["é"][0]) == ["a", "bb"]
    # The reason for `json` over `jsonb`: numbers come back exactly.
    assert json.loads(text)["é"][0]["bb"] == 1e308
    assert str(json.loads(text)["properties"]["reply"]) == "-0.0"
