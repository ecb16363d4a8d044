"""Bundles (`cadenza run DIR`): agents in handoff order, data loaded, the workflow run;
bad files refused naming the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cadenza_cli.bundles import BundleError, load_bundle
from cadenza_cli.dev import DevStack
from test_run_commands import cadenza, stack  # the CLI as a subprocess; a dev stack

__all__ = ["stack"]  # a fixture: used by name

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ["payment-triage", "fraud-alert", "support-escalation"]


def agent(name: str, handoffs: list[str] | None = None, **extra: str) -> str:
    lines = [f"name: {name}", "system_prompt: You help.", "model: local:smollm2-135m"]
    if handoffs:
        lines.append(f"handoffs: [{', '.join(handoffs)}]")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


WORKFLOW = """\
name: lookup
inputs:
  transaction_id: {type: string, default: tx_1}
tasks:
  - id: fetch
    tool: get_transaction
    with: {transaction_id: "${{ inputs.transaction_id }}"}
  - id: total
    tool: calculator
    needs: [fetch]
    with: {expression: "${{ str(tasks.fetch.output.get('amount', 0)) + ' * 2' }}"}
output:
  fetched: "${{ tasks.fetch.output }}"
  doubled: "${{ tasks.total.output.result }}"
"""

DATA = """\
dataset: transactions
records:
  - key: tx_1
    data: {amount: 21, psp: stripe}
  - key: tx_2
    data: {amount: 5, psp: adyen}
"""


def write_bundle(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def good_bundle(root: Path) -> Path:
    # Alphabetical order would register `a-front` before the agents it hands off to.
    return write_bundle(
        root,
        {
            "agents/a-front.yaml": agent("a-front", ["b-middle", "c-back"]),
            "agents/b-middle.yaml": agent("b-middle", ["c-back"]),
            "agents/c-back.yaml": agent("c-back"),
            "data/transactions.yaml": DATA,
            "workflow.yaml": WORKFLOW,
            "inputs.json": '{"transaction_id": "tx_2"}',
        },
    )


# --------------------------------------------------------------------------- loading


def test_agents_are_ordered_so_handoff_targets_come_first(tmp_path: Path) -> None:
    bundle = load_bundle(good_bundle(tmp_path / "b"))
    assert [a.spec.name for a in bundle.agents] == ["c-back", "b-middle", "a-front"]
    assert [(d.dataset, d.records) for d in bundle.datasets] == [("transactions", 2)]
    assert bundle.inputs == {"transaction_id": "tx_2"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_example_bundles_load(name: str) -> None:
    bundle = load_bundle(ROOT / "examples" / name)
    assert bundle.agents
    assert bundle.datasets
    assert all(a.spec.model == "local:smollm2-135m" for a in bundle.agents)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"agents/a.yaml": agent("a")}, "b: a bundle needs a workflow.yaml"),
        (
            {"workflow.yaml": WORKFLOW, "agents/a.yaml": agent("a", temperature="hot")},
            r"b/agents/a.yaml: invalid agent definition\n  - field temperature",
        ),
        (
            {"workflow.yaml": WORKFLOW, "agents/a.yaml": "name: a\nname: b\n"},
            "b/agents/a.yaml: .*duplicate key",
        ),
        (
            {"workflow.yaml": WORKFLOW, "agents/x.yaml": agent("a"), "agents/y.yaml": agent("a")},
            "b/agents/y.yaml: field name: agent 'a' is already defined in b/agents/x.yaml",
        ),
        (
            {
                "workflow.yaml": WORKFLOW,
                "agents/a.yaml": agent("a", ["b"]),
                "agents/b.yaml": agent("b", ["a"]),
            },
            "b/agents/a.yaml, b/agents/b.yaml: field handoffs: handoff cycle a → b → a",
        ),
        (
            {"workflow.yaml": WORKFLOW, "data/t.yaml": "dataset: t\nrows: []\n"},
            "b/data/t.yaml: field records: must be a list",
        ),
        (
            {"workflow.yaml": WORKFLOW, "data/t.yaml": "dataset: 7\nrecords: []\n"},
            "b/data/t.yaml: field dataset",
        ),
        (
            {"workflow.yaml": "name: [unclosed\n"},
            "b/workflow.yaml: YAML syntax error",
        ),
        ({"workflow.yaml": WORKFLOW, "inputs.json": "[1]"}, "b/inputs.json: must be an object"),
    ],
)
def test_bad_bundles_name_the_file_and_field(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(BundleError, match=message):
        load_bundle(write_bundle(tmp_path / "b", files))


# --------------------------------------------------------------------------- running


async def test_run_registers_loads_and_runs_a_bundle(stack: DevStack, tmp_path: Path) -> None:
    bundle = good_bundle(tmp_path / "bundle")
    code, out, err = await cadenza("run", str(bundle), "--wait", "--url", stack.url)
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    # inputs.json chose tx_2; the tool task read the record the bundle loaded.
    assert result["output"] == {"fetched": {"amount": 5, "psp": "adyen"}, "doubled": 10}
    assert err.index("c-back@1") < err.index("b-middle@1") < err.index("a-front@1")
    assert "transactions" in err
    assert "2 records" in err

    # Again, with an input override: unchanged agents are reused, not re-versioned.
    code, out, err = await cadenza(
        "run", str(bundle), "-i", "transaction_id=tx_1", "--wait", "--url", stack.url
    )
    assert code == 0, err
    assert json.loads(out)["output"]["doubled"] == 42
    assert err.count("unchanged") == 3
    async with httpx.AsyncClient(base_url=stack.url) as client:
        latest = (await client.get("/v1/agents/a-front")).json()
        assert latest["version"] == 1
        assert latest["spec"]["handoffs"] == ["b-middle", "c-back"]
        datasets = (await client.get("/v1/datasets")).json()["items"]
        assert [(d["dataset"], d["records"]) for d in datasets] == [("transactions", 2)]


async def test_server_side_problems_name_the_bundle_file(stack: DevStack, tmp_path: Path) -> None:
    duplicate_keys = DATA + "  - key: tx_1\n    data: {amount: 1}\n"
    bundle = write_bundle(
        tmp_path / "bad",
        {
            "agents/a.yaml": agent("a"),
            "data/transactions.yaml": duplicate_keys,
            "workflow.yaml": WORKFLOW,
        },
    )
    code, _, err = await cadenza("run", str(bundle), "--url", stack.url)
    assert code == 2
    assert "bad/data/transactions.yaml: 422" in err
    assert "records[2].key: field records[2].key: duplicate key 'tx_1'" in err

    bundle = write_bundle(
        tmp_path / "badflow",
        {"workflow.yaml": WORKFLOW.replace("tool: calculator", "tool: calculater")},
    )
    code, _, err = await cadenza("run", str(bundle), "--url", stack.url)
    assert code == 2
    assert "badflow/workflow.yaml: 422" in err
    assert "tasks[1].tool" in err
    assert "calculator" in err
