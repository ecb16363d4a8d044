"""`cadenza eval SUITE [--agent name@version] [--against name@version]`: run a suite's cases
through the engine (runs submitted to the gateway like `cadenza run`), score each criterion
on the run's trajectory (timeline) and output, store the results (`POST /v1/evaluations`),
print a table, and exit 1 when a case fails or the agent version regressed against the
baseline — usable in CI."""

from __future__ import annotations

import asyncio
import copy
import sys
from typing import Annotated, Any

import httpx
import typer
from cadenza_client import ApiError, AsyncCadenza, Evaluation
from cadenza_evaluation import (
    CaseResult,
    Judge,
    Suite,
    SuiteError,
    compare,
    emit_results,
    judge_score,
    load_suite,
    render_table,
    score,
    trajectory_from_timeline,
)
from cadenza_workflow import SpecValidationError, parse_agent_ref
from cadenza_workflow.loading import load_document

from .bundles import BundleError, deploy_bundle, is_bundle, load_bundle
from .client import DEFAULT_URL, as_json, cadenza, run_request, submit, wait_for_run


async def _base_body(client: AsyncCadenza, suite: Suite) -> dict[str, Any]:
    """The run request every case starts from: a bundle is deployed once."""
    target = suite.target_path()
    if is_bundle(target):
        bundle = load_bundle(target)
        return await deploy_bundle(client, bundle, {}, sys.stderr)
    return run_request(str(target), {})


def pinned_request(
    body: dict[str, Any], inputs: dict[str, Any], agent: str | None
) -> dict[str, Any]:
    """The case's run request: its inputs, and the agent version under test pinned through
    the spec's `agents` map (the gateway's pinning rules do the rest)."""
    out = {**copy.deepcopy(body), "inputs": {**body.get("inputs", {}), **inputs}}
    if agent is not None:
        name, version = parse_agent_ref(agent)
        if version is None:
            raise typer.BadParameter(f"{agent!r}: give name@version", param_hint="--agent")
        spec = out.get("spec")
        if isinstance(spec, str):
            try:
                spec = load_document(spec)  # YAML 1.2, as the gateway reads it
            except SpecValidationError as exc:
                raise typer.BadParameter(f"the case's spec: {exc}") from None
        if not isinstance(spec, dict):
            raise typer.BadParameter("only a bundle or workflow file can be pinned")
        spec["agents"] = {**(spec.get("agents") or {}), name: version}
        out["spec"] = spec
    return out


async def _run_case(
    client: AsyncCadenza,
    suite: Suite,
    case_index: int,
    base: dict[str, Any],
    agent: str | None,
    judge: Any,
) -> CaseResult:
    case = suite.cases[case_index]
    variant = agent or "default"
    try:
        if case.run is not None:
            run = await client.get_run(case.run)
        else:
            accepted = await submit(client, pinned_request(base, case.inputs, agent))
            run = await wait_for_run(client, accepted.id, interval_s=0.3, out=sys.stderr)
        timeline = await client.run_timeline(run.id)
    except ApiError as exc:
        return CaseResult(case.name, variant, None, "error", error=str(exc))
    trajectory = trajectory_from_timeline(as_json(run), timeline)
    scores = []
    for criterion in case.criteria:
        if isinstance(criterion, Judge):
            model = criterion.judge.model or suite.judge_model
            provider, model_name = judge.resolve(model)
            scores.append(await judge_score(criterion, trajectory, provider, model_name))
        else:
            scores.append(score(criterion, trajectory))
    return CaseResult(case.name, variant, run.id, run.status, scores)


async def evaluate(
    suite: Suite, url: str, agent: str | None, against: str | None
) -> tuple[list[CaseResult], list[CaseResult], Evaluation]:
    from cadenza_llm import ProviderRegistry

    judge = ProviderRegistry()
    try:
        async with cadenza(url, timeout=60) as client:
            base = await _base_body(client, suite)
            baseline: list[CaseResult] = []
            if against is not None:
                for i in range(len(suite.cases)):
                    baseline.append(await _run_case(client, suite, i, base, against, judge))
            tested = [
                await _run_case(client, suite, i, base, agent, judge)
                for i in range(len(suite.cases))
            ]
            regressions = compare(baseline, tested)
            results = [*baseline, *tested]
            for result in results:
                emit_results(suite.name, result)
            stored = await client.store_evaluation(
                suite.name,
                [r.as_dict() for r in results],
                regressions=[r.as_dict() for r in regressions],
                agent=agent,
                against=against,
            )
    finally:
        await judge.aclose()
    return baseline, tested, stored


def eval_command(
    suite_path: Annotated[str, typer.Argument(metavar="SUITE", help="An evaluation suite (YAML).")],
    agent: Annotated[
        str | None, typer.Option("--agent", help="The agent version under test, name@version.")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option("--against", help="A baseline version (name@version) to compare with."),
    ] = None,
    url: Annotated[
        str, typer.Option("--url", envvar="CADENZA_URL", help="Gateway base URL.")
    ] = DEFAULT_URL,
) -> None:
    """Run an evaluation suite; exit 1 on a failed case or a regression."""
    try:
        suite = load_suite(suite_path)
        baseline, tested, stored = asyncio.run(evaluate(suite, url, agent, against))
    except (SuiteError, BundleError, ApiError, httpx.HTTPError) as exc:
        typer.echo(str(exc) or repr(exc), err=True)
        raise typer.Exit(2) from None
    regressions = stored.regressions
    table = render_table(
        [*baseline, *tested],
        compare(baseline, tested),
        color=sys.stdout.isatty(),
    )
    typer.echo(table)
    typer.echo(f"evaluation {stored.id}: {stored.summary}")
    if regressions or not stored.passed:
        raise typer.Exit(1)
