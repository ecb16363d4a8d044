"""Turning a run request into what a run stores: the spec (registered or inline), its
name/version and the resolved inputs; and telling an idempotent replay from a key reused
for a different request."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cadenza_state import RunRecord, WorkflowRecord
from cadenza_workflow import SpecValidationError, WorkflowSpec, parse_spec, resolve_inputs
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.concurrency import run_in_threadpool

from . import metrics
from .agent_pins import matches_pins, resolve_agents
from .documents import MAX_VALUE_DEPTH, find_non_json, load_workflow_spec, nesting_depth
from .models import RunCreate
from .problems import FieldProblem, InvalidInputs, spec_problem


@dataclass(frozen=True)
class RunSubmission:
    """Everything a new run row and its plan.requested event carry."""

    workflow_name: str
    workflow_version: int | None
    spec: dict[str, Any]
    inputs: dict[str, Any]
    parsed: WorkflowSpec


async def _inline_spec(source: dict[str, Any] | str) -> tuple[WorkflowSpec, dict[str, Any]]:
    try:
        return await load_workflow_spec(source.encode() if isinstance(source, str) else source)
    except SpecValidationError as exc:
        # The body parsed fine; its `spec` field holds the problem: 422, paths under `spec`.
        raise spec_problem(exc, field_prefix="spec") from None


def resolve_run_inputs(spec: WorkflowSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    bad = find_non_json(inputs, "inputs")
    if bad is not None:
        message = f"field {bad}: NaN and Infinity are not JSON values"
        raise InvalidInputs(
            message, errors=[FieldProblem(field=bad, code="input_type", message=message)]
        )
    depth = nesting_depth(inputs) - 1  # the inputs object itself is not nesting
    if depth > MAX_VALUE_DEPTH:
        message = f"field inputs: values nest {depth} levels deep (limit {MAX_VALUE_DEPTH})"
        raise InvalidInputs(
            message, errors=[FieldProblem(field="inputs", code="input_type", message=message)]
        )
    try:
        return resolve_inputs(spec, inputs)
    except SpecValidationError as exc:
        raise spec_problem(exc, inputs=True) from None


async def prepare_submission(run_in: RunCreate, registered: WorkflowRecord | None) -> RunSubmission:
    """The run of ``registered`` (the version the request named) or of its inline
    spec (validated here: 422), with the inputs checked against the spec (422)."""
    if registered is not None:
        # Stored specs were validated at registration and are in the native format.
        spec = await run_in_threadpool(parse_spec, registered.spec)
        return RunSubmission(
            workflow_name=registered.name,
            workflow_version=registered.version,
            spec=registered.spec,
            inputs=resolve_run_inputs(spec, run_in.inputs),
            parsed=spec,
        )
    assert run_in.spec is not None
    spec, data = await _inline_spec(run_in.spec)
    return RunSubmission(
        workflow_name=spec.name,
        workflow_version=None,
        spec=data,
        inputs=resolve_run_inputs(spec, run_in.inputs),
        parsed=spec,
    )


async def pin_agents(
    submission: RunSubmission, *, session: AsyncSession, tenant_id: str
) -> RunSubmission:
    """The submission with its agents pinned (``agent: name@version`` on every agent task,
    the ``agents`` map completed with handoff targets); 422 naming ``tasks[i].agent`` (under
    ``spec.`` for an inline spec) when an agent or version is not registered."""
    try:
        pins = await resolve_agents(session=session, tenant_id=tenant_id, spec=submission.parsed)
    except SpecValidationError as exc:
        inline = submission.workflow_version is None
        raise spec_problem(exc, field_prefix="spec" if inline else "") from None
    if not pins.versions:
        return submission
    metrics.AGENTS_PINNED.inc(len(pins.versions))
    return replace(submission, spec=pins.apply(submission.spec))


async def replay_mismatch(run: RunRecord, run_in: RunCreate) -> str | None:
    """Why ``run_in`` is not the request that created ``run`` (None if it is the same:
    same workflow — or same inline spec — and the same resolved inputs)."""
    if run_in.workflow is not None:
        name, version = run_in.workflow_ref()
        if run.workflow_version is None or run.workflow_name != name:
            return f"it names workflow {name!r}; the key's run is of {_origin(run)}"
        if version is not None and version != run.workflow_version:
            return f"it names version {version}; the key's run is of {_origin(run)}"
    else:
        assert run_in.spec is not None
        if run.workflow_version is not None:
            return f"it sends an inline spec; the key's run is of {_origin(run)}"
        try:
            _spec, data = await load_workflow_spec(
                run_in.spec.encode() if isinstance(run_in.spec, str) else run_in.spec
            )
        except SpecValidationError:
            return "it sends a different (invalid) spec"
        if not matches_pins(data, run.spec):
            return "it sends a different inline spec"
    try:
        stored = await run_in_threadpool(parse_spec, run.spec)
        inputs = resolve_inputs(stored, run_in.inputs)
    except SpecValidationError:
        return "its inputs differ from the original request's"
    if inputs != run.inputs:
        return "its inputs differ from the original request's"
    return None


def _origin(run: RunRecord) -> str:
    if run.workflow_version is None:
        return f"an inline spec named {run.workflow_name!r}"
    return f"workflow {run.workflow_name!r} version {run.workflow_version}"
