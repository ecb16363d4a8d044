"""A trigger's filter, input mapping and dedupe key."""

from __future__ import annotations

from typing import Any

import pytest
from cadenza_triggers import CloudEvent, FilterFailed, MappingFailed, Trigger, TriggerSpec
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def trigger(**spec: Any) -> Trigger:
    base: dict[str, Any] = {"name": "t", "topics": ["up"], "workflow": "echo"}
    return Trigger("default", "t", 1, TriggerSpec.model_validate({**base, **spec}))


def event(data: Any = None, **attrs: Any) -> CloudEvent:
    base = {"id": "e1", "source": "/s", "type": "pay", "mode": "binary"}
    return CloudEvent.model_validate({**base, **attrs, "data": data})


def test_attribute_filters_and_the_expression() -> None:
    t = trigger(filter={"type": ["pay", "refund"], "source": "/s", "expression": "data.n > 2"})
    assert t.matches(event({"n": 3}))
    assert not t.matches(event({"n": 1}))
    assert not t.matches(event({"n": 3}, type="other"))
    assert not t.matches(event({"n": 3}, source="/x"))
    with pytest.raises(FilterFailed, match=r"filter\.expression"):
        t.matches(event({"m": 1}))  # no key n: the expression errors (poison), not "false"


def test_inputs_mapping_renders_templates_over_the_event() -> None:
    t = trigger(inputs={"n": "${{ data.n * 2 }}", "who": "acct ${{ event.subject }}", "k": 1})
    assert t.map_inputs(event({"n": 4}, subject="a7")) == {"n": 8, "who": "acct a7", "k": 1}
    with pytest.raises(MappingFailed):
        t.map_inputs(event("not an object"))


def test_dedupe_key_defaults_to_source_and_id_and_can_be_an_expression() -> None:
    assert trigger().dedupe_key(event()) == "/s\ne1"
    assert trigger().dedupe_key(event(id="e2")) != trigger().dedupe_key(event())
    custom = trigger(dedupe_key="data.payment_id")
    assert custom.dedupe_key(event({"payment_id": "p-9"})) == "p-9"
    with pytest.raises(MappingFailed, match="empty"):
        custom.dedupe_key(event({"payment_id": ""}))
    long_key = custom.dedupe_key(event({"payment_id": "x" * 2000}))
    assert long_key.startswith("sha256:")
    assert len(long_key) < 100


@pytest.mark.parametrize(
    "bad",
    [
        {"filter": {"expression": "inputs.x"}},  # only event/data are defined
        {"inputs": {"x": "${{ __import__('os') }}"}},
        {"topics": [], "http": False},
        {"workflow": "Bad Name"},
        {"dedupe_key": "data.id +"},
    ],
)
def test_invalid_specs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        trigger(**bad)
