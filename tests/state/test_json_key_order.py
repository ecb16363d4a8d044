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


def test_lists_without_objects_and_what_orjson_refuses_are_written_too() -> None:
    headers = [["ce_id", "x"], ["ce_subject", "{not an object}"]]
    assert json.loads(dumps_in_jsonb_key_order(headers)) == headers
    nested = [["a", {"bb": 1, "a": [{"zz": 0, "y": 1}]}]]
    assert dumps_in_jsonb_key_order(nested) == '[["a",{"a":[{"y":1,"zz":0}],"bb":1}]]'
    huge = {"zz": 10**30, "a": [-0.0]}  # beyond 64 bits: the standard library writes it
    assert json.loads(dumps_in_jsonb_key_order(huge)) == {"a": [-0.0], "zz": 10**30}
    assert list(json.loads(dumps_in_jsonb_key_order(huge))) == ["a", "zz"]
    assert dumps_in_jsonb_key_order(None) == "null"
