"""One YAML dialect everywhere: the CLI reads workflow files with the gateway's YAML 1.2
loader, so `NO`, `on` and dates arrive as the text they are (YAML 1.1 made them `false`,
`true` and a date object that crashed JSON encoding)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cadenza_cli.client import run_request

pytestmark = pytest.mark.unit

SPEC = """\
name: norway
inputs:
  country: {type: string, default: NO}
tasks:
  - id: hello
    tool: transform
    with:
      on: yes
      country: NO
      since: 2026-12-04
"""


def test_a_workflow_file_is_read_as_yaml_1_2(tmp_path: Path) -> None:
    path = tmp_path / "norway.yaml"
    path.write_text(SPEC)
    body = run_request(str(path), {"country": "SE"})
    task = body["spec"]["tasks"][0]
    assert task["with"] == {"on": "yes", "country": "NO", "since": "2026-12-04"}
    assert body["spec"]["inputs"]["country"]["default"] == "NO"
    json.dumps(body)  # plain JSON data: nothing a date object could break
    assert body["inputs"] == {"country": "SE"}
