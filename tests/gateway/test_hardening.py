"""Regression tests of the API hardening list (issue 11): what the sandbox would refuse at
run time is refused at registration, naming the task and the field."""

from __future__ import annotations

import httpx
import pytest

unit_only = pytest.mark.parametrize("stack", ["unit"], indirect=True)


@unit_only
@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("'%s' % inputs", "'%' string formatting"),
        ("f'{1:{10**9}}'", "format widths are limited"),
        ("f'{1:5000}'", "format widths are limited"),
    ],
)
async def test_a_when_the_sandbox_can_never_run_is_refused_at_registration(
    client: httpx.AsyncClient, when: str, message: str
) -> None:
    spec = {
        "name": "never",
        "tasks": [{"id": "a", "tool": "transform", "with": {"x": 1}, "when": when}],
    }
    resp = await client.post("/v1/workflows", json=spec)
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert any(e["task"] == "a" and "when" in e["field"] for e in errors), errors
    assert any(message in e["message"] for e in errors), errors


@unit_only
async def test_a_when_with_data_driven_formatting_still_registers(
    client: httpx.AsyncClient,
) -> None:
    spec = {
        "name": "fine",
        "inputs": {"w": {"type": "integer", "default": 3}},
        "tasks": [
            {
                "id": "a",
                "tool": "transform",
                "with": {"x": 1},
                "when": "f'{1:>{inputs.w}}' != '' and 10 % 3 == 1",
            }
        ],
    }
    resp = await client.post("/v1/workflows", json=spec)
    assert resp.status_code == 201, resp.text
