"""Rerun and fork end to end: gateway, orchestrator and a worker as separate OS processes on
real Kafka, PostgreSQL, Redis and MinIO.

The `flaky` tool counts its REAL executions in Redis (per `key`) and returns the count, so
a task that ran again would show a higher count; the calls endpoint lists a call only for a
task that was dispatched (a reused task has attempt 0 and no call)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cluster import Cluster
from support.drills import finished, tool

ROOT = Path(__file__).resolve().parents[2]
# Four runs and two CLI calls on three service processes: generous on a loaded machine.
pytestmark = pytest.mark.timeout(300)


def spec() -> dict[str, Any]:
    """a → b (fails while `failures` > 0) → c, and two branches a → l → l2, a → r → r2,
    all joined by `out`."""
    times_ten = "${{ tasks.%s.output.v * 10 }}"
    return {
        "name": "replay",
        "inputs": {
            "tag": {"type": "string"},
            "failures": {"type": "integer", "default": 0},
            "left": {"type": "integer", "default": 1},
            "right": {"type": "integer", "default": 1},
        },
        "tasks": [
            tool("a", "flaky", **{"with": {"failures": 0, "key": "${{ inputs.tag }}-a"}}),
            tool(
                "b",
                "flaky",
                needs=["a"],
                retry={"max_attempts": 1},
                **{"with": {"failures": "${{ inputs.failures }}", "key": "${{ inputs.tag }}-b"}},
            ),
            tool(
                "c",
                "transform",
                needs=["b"],
                **{
                    "with": {"a": "${{ tasks.a.output.calls }}", "b": "${{ tasks.b.output.calls }}"}
                },
            ),
            tool("l", "transform", needs=["a"], **{"with": {"v": "${{ inputs.left }}"}}),
            tool("l2", "transform", needs=["l"], **{"with": {"v": times_ten % "l"}}),
            tool("r", "transform", needs=["a"], **{"with": {"v": "${{ inputs.right }}"}}),
            tool("r2", "transform", needs=["r"], **{"with": {"v": times_ten % "r"}}),
            tool(
                "out",
                "transform",
                needs=["c", "l2", "r2"],
                **{"with": {"sum": "${{ tasks.l2.output.v + tasks.r2.output.v }}"}},
            ),
        ],
        "output": "${{ tasks.out.output.sum }}",
    }


def tasks_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["node_id"]: t for t in run["tasks"]}


async def called_nodes(api: httpx.AsyncClient, run_id: str) -> list[str]:
    """The tasks that made a call, following the pages (2 calls a page)."""
    nodes: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        resp = await api.get(f"/v1/runs/{run_id}/calls", params=params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        nodes += [c["node_id"] for c in page["items"]]
        if page["next_cursor"] is None:
            return nodes
        params["cursor"] = page["next_cursor"]


async def cadenza(url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cadenza_cli", *args, "--url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_rerun_and_fork_reuse_exactly_what_did_not_change(
    cluster: Cluster, api: httpx.AsyncClient
) -> None:
    inputs = {"tag": cluster.namespace, "failures": 1}
    resp = await api.post("/v1/runs", json={"spec": spec(), "inputs": inputs})
    assert resp.status_code == 201, resp.text
    parent = await finished(api, resp.json()["id"])
    assert parent["status"] == "failed"
    assert tasks_of(parent)["b"]["status"] == "failed"
    assert tasks_of(parent)["a"]["output"] == {"calls": 1}

    # Rerun from the failed task (the default) after fixing the input that made it fail.
    resp = await api.post(f"/v1/runs/{parent['id']}/rerun", json={"inputs": {"failures": 0}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["parent_run_id"] == parent["id"]
    assert resp.json()["lineage"]["from"] == ["b"]
    rerun = await finished(api, resp.json()["id"])
    assert rerun["status"] == "succeeded", rerun["error"]
    t = tasks_of(rerun)
    # `a` was not executed again: its recorded output (1 execution) was reused, no call made.
    assert t["a"]["reused_from"] == f"{parent['id']}.a"
    assert (t["a"]["attempt"], t["a"]["output"]) == (0, {"calls": 1})
    assert t["b"]["output"] == {"calls": 2}  # the failed execution, then this one
    assert t["c"]["output"] == {"a": 1, "b": 2}
    called = await called_nodes(api, rerun["id"])
    assert "a" not in called
    assert {"b", "c", "out"} <= set(called)
    assert sorted(called) == sorted(n for n, task in t.items() if not task["reused_from"])
    assert rerun["output"] == 20

    # A fork changing an input that only the right branch reads recomputes exactly that
    # branch's dependants; everything else is reused.
    resp = await api.post(f"/v1/runs/{rerun['id']}/fork", json={"inputs": {"right": 2}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["lineage"]["kind"] == "fork"
    fork = await finished(api, resp.json()["id"])
    assert fork["status"] == "succeeded", fork["error"]
    assert sorted(await called_nodes(api, fork["id"])) == ["out", "r", "r2"]
    f = tasks_of(fork)
    assert {n for n, task in f.items() if task["reused_from"]} == {"a", "b", "c", "l", "l2"}
    assert f["b"]["output"] == {"calls": 2}  # reused: the tool did not run a third time
    assert fork["output"] == 30

    # A fork replacing a task's output by hand: that task does not run, its dependants do.
    resp = await api.post(
        f"/v1/runs/{rerun['id']}/fork", json={"tasks": {"l": {"output": {"v": 5}}}}
    )
    assert resp.status_code == 201, resp.text
    replaced = await finished(api, resp.json()["id"])
    assert replaced["status"] == "succeeded", replaced["error"]
    assert sorted(await called_nodes(api, replaced["id"])) == ["l2", "out"]
    r = tasks_of(replaced)
    assert (r["l"]["reused_from"], r["l"]["output"]) == ("override", {"v": 5})
    assert r["l2"]["output"] == {"v": 50}
    assert replaced["output"] == 60

    # The diff of the rerun and its first fork: the changed input, the branch that changed.
    resp = await api.get(f"/v1/runs/{rerun['id']}/diff/{fork['id']}")
    assert resp.status_code == 200, resp.text
    diff = resp.json()
    assert diff["related"] is True
    assert diff["inputs"] == {"right": {"a": 1, "b": 2}}
    by_node = {d["node_id"]: d for d in diff["tasks"]}
    assert {n for n, d in by_node.items() if not d["same_output"]} == {"r", "r2", "out"}
    assert by_node["r"]["b"]["calls"]["tool_calls"] == 1
    assert by_node["a"]["b"]["calls"]["tool_calls"] == 0
    assert by_node["a"]["same_cache_key"] is True

    # The CLI shows the same.
    code, out, err = await cadenza(cluster.url, "runs", "diff", rerun["id"], fork["id"])
    assert code == 0, err
    assert "input right: 1 -> 2" in out
    code, out, err = await cadenza(cluster.url, "runs", "show", fork["id"], "--calls")
    assert code == 0, err
    assert [line.split("#")[0] for line in out.splitlines()] == ["r", "r2", "out"]
    assert fork["lineage"]["parent_run_id"] == rerun["id"]
