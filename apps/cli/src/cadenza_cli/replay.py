"""`cadenza runs rerun|fork|diff` and `cadenza runs show ID --calls` (docs/replay.md)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from cadenza_client import AsyncCadenza, RecordedCall, Run, RunDiff

from .client import DEFAULT_URL, on_gateway, print_json, print_result, wait_for_run
from .inputs import parse_inputs

UrlOption = Annotated[str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")]
InputsOption = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="Change an input: key=value (JSON values allowed)."),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Show live progress and print the new run's output.")
]


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in values or []:
        task, sep, value = pair.partition("=")
        if not sep or not task:
            raise typer.BadParameter(f"{option} {pair!r}: expected TASK=VALUE")
        out[task] = value
    return out


def _start(begin: Callable[[AsyncCadenza], Awaitable[Run]], wait: bool, url: str) -> None:
    """Start the new run (``begin``: a rerun or a fork), then show it as `cadenza run` does."""

    async def work(client: AsyncCadenza) -> Run:
        run = await begin(client)
        kind = (run.lineage or {}).get("kind")
        typer.echo(f"run {run.id} accepted ({kind} of {run.parent_run_id})", err=True)
        return await wait_for_run(client, run.id) if wait else run

    run = on_gateway(url, work)
    if wait:
        reused = [t.node_id for t in run.tasks if t.reused_from]
        print_result(run, parent_run_id=run.parent_run_id, reused=reused)
    else:
        print_json(run)


FromOption = Annotated[
    list[str] | None,
    typer.Option(
        "--from",
        "-f",
        help="A task to run again (repeatable); default: the failed ones. Everything "
        "downstream runs again too.",
    ),
]


def rerun_command(
    run_id: str,
    from_: FromOption = None,
    inputs: InputsOption = None,
    wait: WaitOption = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Rerun a finished run: a NEW run of the same pinned workflow in which the tasks
    upstream of --from reuse their recorded outputs (no model or tool call)."""
    values = parse_inputs(inputs)
    _start(lambda c: c.rerun_run(run_id, from_tasks=from_, inputs=values), wait, url)


def fork_command(
    run_id: str,
    inputs: InputsOption = None,
    model: Annotated[
        str | None, typer.Option(help="Model (provider:model) for every agent task.")
    ] = None,
    task_model: Annotated[
        list[str] | None, typer.Option("--task-model", help="TASK=provider:model (repeatable).")
    ] = None,
    system_prompt: Annotated[
        list[str] | None,
        typer.Option("--system-prompt", help="TASK=text: replace an agent task's system prompt."),
    ] = None,
    agent_version: Annotated[
        list[str] | None,
        typer.Option("--agent-version", help="TASK=N: run version N of the task's agent."),
    ] = None,
    output: Annotated[
        list[str] | None,
        typer.Option("--output", help="TASK=JSON: replace a task's output by hand."),
    ] = None,
    wait: WaitOption = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Fork a finished run with overrides: tasks whose cache key is unchanged reuse the
    parent's outputs, exactly the dependants of what changed run again."""
    tasks: dict[str, dict[str, Any]] = {}
    for task, value in _pairs(task_model, "--task-model").items():
        tasks.setdefault(task, {})["model"] = value
    for task, value in _pairs(system_prompt, "--system-prompt").items():
        tasks.setdefault(task, {})["system_prompt"] = value
    for task, value in _pairs(agent_version, "--agent-version").items():
        try:
            tasks.setdefault(task, {})["agent_version"] = int(value)
        except ValueError:
            raise typer.BadParameter(f"--agent-version {task}={value}: not a number") from None
    for task, value in _pairs(output, "--output").items():
        try:
            tasks.setdefault(task, {})["output"] = json.loads(value)
        except json.JSONDecodeError:
            tasks.setdefault(task, {})["output"] = value
    values = parse_inputs(inputs)
    _start(lambda c: c.fork_run(run_id, inputs=values, model=model, tasks=tasks), wait, url)


def diff_command(
    run_a: str,
    run_b: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole diff as JSON.")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """Compare two runs: inputs, outputs and, per task, outputs, reuse and calls."""

    async def work(client: AsyncCadenza) -> RunDiff:
        return await client.diff_runs(run_a, run_b)

    diff = on_gateway(url, work)
    if as_json:
        print_json(diff)
        return
    typer.echo(f"a {diff.a}  {diff.status['a']}")
    typer.echo(f"b {diff.b}  {diff.status['b']}")
    for name, change in diff.inputs.items():
        typer.echo(f"input {name}: {json.dumps(change['a'])} -> {json.dumps(change['b'])}")
    for t in diff.tasks:
        a, b = t.a or {}, t.b or {}
        mark = "=" if t.same_output else "≠"
        reused = " reused" if b.get("reused_from") else ""
        calls = (
            f"calls {a.get('calls', {}).get('llm_calls', 0)}+{a.get('calls', {}).get('tool_calls', 0)}"
            f" -> {b.get('calls', {}).get('llm_calls', 0)}+{b.get('calls', {}).get('tool_calls', 0)}"
        )
        typer.echo(
            f"  {mark} {t.node_id:<24} {a.get('status', '-'):<10} -> "
            f"{b.get('status', '-'):<10} {calls}{reused}"
        )
    typer.echo(f"output {'same' if diff.same_output else 'differs'}")


def format_call(call: RecordedCall) -> str:
    """One line per call: where, what, cost."""
    where = f"{call.node_id}#{call.attempt}" + (f".{call.turn}" if call.turn is not None else "")
    latency = f"{call.latency_ms:.0f}ms" if call.latency_ms is not None else "-"
    if call.kind == "llm":
        what = (
            f"llm  {call.provider}:{call.model}  "
            f"{call.input_tokens}→{call.output_tokens} tokens  "
            f"${call.cost_usd or 0:.6f}"
        )
    else:
        args = json.dumps(call.arguments, default=str)
        what = f"tool {call.tool}({args[:60]})"
    error = f"  error: {call.error}" if call.error else ""
    return f"{where:<28} {call.status:<9} {latency:>8}  {what}{error}"
