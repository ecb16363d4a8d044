"""One YAML dialect everywhere: the CLI reads workflow files with the gateway's YAML 1.2
loader, so `NO`, `on` and dates arrive as the text they are (YAML 1.1 made them `false`,
`true` and a date object that crashed JSON encoding)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from cadenza_cli.client import run_request
from cadenza_cli.evaluate import pinned_request
from cadenza_cli.triggers import read_document
from cadenza_evaluation import parse_suite

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


def test_trigger_and_schedule_documents_are_read_as_yaml_1_2(tmp_path: Path) -> None:
    path = tmp_path / "trigger.yaml"
    path.write_text(
        "name: nordic\nworkflow: norway\nfilter: {type: order.created}\n"
        "inputs: {country: NO, flag: on, since: 2026-12-04}\n"
    )
    document = read_document(path)
    assert document["inputs"] == {"country": "NO", "flag": "on", "since": "2026-12-04"}
    json.dumps(document)


def test_a_bad_trigger_document_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "trigger.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(typer.Exit):
        read_document(path)


def test_evaluation_suites_and_pinned_specs_are_read_as_yaml_1_2() -> None:
    suite = parse_suite(
        "name: s\ncases:\n  - name: c\n    inputs: {country: NO, on: off, day: 2026-12-04}\n"
        "    criteria: [{max_steps: 3}]\n",
        "suite.yaml",
    )
    assert suite.cases[0].inputs == {"country": "NO", "on": "off", "day": "2026-12-04"}
    pinned = pinned_request({"spec": SPEC}, {}, "helper@2")
    assert pinned["spec"]["tasks"][0]["with"]["country"] == "NO"
    assert pinned["spec"]["agents"] == {"helper": 2}
