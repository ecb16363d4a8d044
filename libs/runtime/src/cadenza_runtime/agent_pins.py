"""Pinning a run to agent versions, so registering a new version never changes a run that
has started.

Shared by every way a run starts (the gateway's POST /v1/runs, triggers, schedules).

Rules (docs/agents.md § Versions and pinning):

- the run's ``agents`` map gets one version per agent name the run can reach: the version
  the spec's own ``agents`` map gives, else the first ``name@version`` a task names, else the
  latest registered version;
- a task naming ``name@version`` keeps that version; a task naming ``name`` gets the map's;
- agents reachable by handoff (from any pinned version, transitively) are added to the map.

The stored spec of the run then has every agent task as ``name@version`` and a complete
``agents`` map: the worker loads ``agents`` rows by (tenant, name, version) from it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from cadenza_state import AgentRecord
from cadenza_workflow import (
    ErrorCode,
    SpecError,
    SpecValidationError,
    WorkflowSpec,
    format_agent_ref,
    parse_agent_ref,
)
from opentelemetry import trace
from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

tracer = trace.get_tracer("cadenza.runtime")

REGISTER_HINT = "register it with POST /v1/agents"


@dataclass(frozen=True)
class _TaskRef:
    index: int
    task_id: str
    name: str
    version: int | None

    @property
    def field(self) -> str:
        return f"tasks[{self.index}].agent"


@dataclass(frozen=True)
class AgentPins:
    """The versions a run uses: ``versions`` (the run's ``agents`` map) and, per task index,
    the ``name@version`` its ``agent`` becomes."""

    versions: dict[str, int] = field(default_factory=dict)
    tasks: dict[int, str] = field(default_factory=dict)

    def apply(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The native spec ``data`` with its agent tasks and ``agents`` map pinned."""
        tasks = [
            {**task, "agent": self.tasks[i]} if i in self.tasks else task
            for i, task in enumerate(data["tasks"])
        ]
        pinned = {**data, "tasks": tasks}
        if self.versions:
            pinned["agents"] = dict(self.versions)
        return pinned


def _task_refs(spec: WorkflowSpec) -> tuple[list[_TaskRef], list[SpecError]]:
    refs: list[_TaskRef] = []
    errors: list[SpecError] = []
    for i, task in enumerate(spec.tasks):
        if task.kind != "agent" or task.agent is None:
            continue
        try:
            name, version = parse_agent_ref(task.agent)
        except ValueError as exc:
            errors.append(
                SpecError.at(ErrorCode.INVALID_FIELD, f"tasks[{i}].agent", str(exc), task.id)
            )
            continue
        refs.append(_TaskRef(i, task.id, name, version))
    return refs, errors


class _Resolver:
    """Looks agents up for one tenant, collecting every problem before raising."""

    def __init__(self, session: AsyncSession, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.errors: list[SpecError] = []

    async def latest(self, names: set[str]) -> dict[str, int]:
        return await latest_agent_versions(
            session=self.session, tenant_id=self.tenant_id, names=names
        )

    async def load(self, refs: set[tuple[str, int]]) -> dict[tuple[str, int], Any]:
        return await get_agent_versions(session=self.session, tenant_id=self.tenant_id, refs=refs)

    def unknown(self, field: str, detail: str, task: str | None = None) -> None:
        self.errors.append(SpecError.at(ErrorCode.UNKNOWN_AGENT, field, detail, task))


async def resolve_agents(*, session: AsyncSession, tenant_id: str, spec: WorkflowSpec) -> AgentPins:
    """Pin ``spec``'s agents for ``tenant_id`` (see the module docstring). Raises
    :class:`SpecValidationError` naming ``tasks[i].agent`` / ``agents.<name>`` when an agent
    or a version is not registered. Runs no query for a spec without agents."""
    refs, errors = _task_refs(spec)
    if errors:
        raise SpecValidationError(errors)
    if not refs and not spec.agents:
        return AgentPins()
    with tracer.start_as_current_span("cadenza.resolve_agents") as span:
        pins = await _resolve(_Resolver(session, tenant_id), spec, refs)
        span.set_attribute("cadenza.agents.pinned", len(pins.versions))
        return pins


async def _resolve(resolver: _Resolver, spec: WorkflowSpec, refs: list[_TaskRef]) -> AgentPins:
    versions = dict(spec.agents)
    for ref in refs:
        if ref.version is not None:
            versions.setdefault(ref.name, ref.version)
    unpinned = {r.name for r in refs if r.version is None} - versions.keys()
    latest = await resolver.latest(unpinned)
    for ref in refs:
        if ref.version is None and ref.name in unpinned and ref.name not in latest:
            detail = f"no agent named '{ref.name}' is registered ({REGISTER_HINT})"
            resolver.unknown(ref.field, detail, ref.task_id)
    versions.update(latest)
    explicit = {(r.name, r.version) for r in refs if r.version is not None}
    wanted = explicit | set(versions.items())
    records = await resolver.load(wanted)
    for ref in refs:
        if ref.version is not None and (ref.name, ref.version) not in records:
            detail = f"agent '{ref.name}' has no version {ref.version} ({REGISTER_HINT})"
            resolver.unknown(ref.field, detail, ref.task_id)
    for name, version in spec.agents.items():
        if (name, version) not in records:
            detail = f"agent '{name}' has no version {version} ({REGISTER_HINT})"
            resolver.unknown(f"agents.{name}", detail)
    if resolver.errors:
        raise SpecValidationError(resolver.errors)
    await _add_handoff_targets(resolver, versions, records)
    if resolver.errors:
        raise SpecValidationError(resolver.errors)
    tasks = {
        r.index: format_agent_ref(r.name, r.version if r.version is not None else versions[r.name])
        for r in refs
    }
    return AgentPins(versions=dict(sorted(versions.items())), tasks=tasks)


async def _add_handoff_targets(
    resolver: _Resolver, versions: dict[str, int], records: dict[tuple[str, int], Any]
) -> None:
    """Walk handoffs breadth-first from the loaded agents, adding each target to
    ``versions`` (two queries per level of the handoff graph)."""
    seen = set(records)
    frontier = list(records.values())
    while frontier:
        sources = {t: r for r in frontier for t in r.spec.get("handoffs", [])}
        new = set(sources) - versions.keys()
        versions.update(await resolver.latest(new))
        for target in sorted(new - versions.keys()):
            source = sources[target]
            detail = (
                f"agent '{format_agent_ref(source.name, source.version)}' hands off to "
                f"'{target}', which is not registered ({REGISTER_HINT})"
            )
            resolver.unknown("agents", detail)
        wanted = {(t, versions[t]) for t in sources if t in versions} - seen
        seen |= wanted
        frontier = list((await resolver.load(wanted)).values())


def matches_pins(unpinned: Mapping[str, Any], pinned: Mapping[str, Any]) -> bool:
    """Whether ``pinned`` (a run's stored spec) is ``unpinned`` (a native spec) with its
    agents pinned: same spec otherwise, each ``name`` task now ``name@<map version>``, each
    ``name@version`` task unchanged and the given ``agents`` entries kept."""
    pin_map = pinned.get("agents", {})
    if any(pin_map.get(name) != v for name, v in unpinned.get("agents", {}).items()):
        return False
    tasks_u, tasks_p = unpinned.get("tasks", []), pinned.get("tasks", [])
    if len(tasks_u) != len(tasks_p):
        return False
    for task_u, task_p in zip(tasks_u, tasks_p, strict=True):
        if {k: v for k, v in task_u.items() if k != "agent"} != {
            k: v for k, v in task_p.items() if k != "agent"
        }:
            return False
        ref = task_u.get("agent")
        if ref is None:
            if task_p.get("agent") is not None:
                return False
            continue
        try:
            name, version = parse_agent_ref(ref)
        except ValueError:
            return False
        expected = version if version is not None else pin_map.get(name)
        if expected is None or task_p.get("agent") != format_agent_ref(name, expected):
            return False
    rest = ("tasks", "agents")
    return {k: v for k, v in unpinned.items() if k not in rest} == {
        k: v for k, v in pinned.items() if k not in rest
    }


async def latest_agent_versions(
    *, session: AsyncSession, tenant_id: str, names: Collection[str]
) -> dict[str, int]:
    """name → latest version, for those of ``names`` that are registered."""
    if not names:
        return {}
    stmt = (
        select(AgentRecord.name, func.max(AgentRecord.version))
        .where(AgentRecord.tenant_id == tenant_id, AgentRecord.name.in_(sorted(names)))
        .group_by(AgentRecord.name)
    )
    return {name: int(version) for name, version in (await session.execute(stmt)).all()}


async def get_agent_versions(
    *, session: AsyncSession, tenant_id: str, refs: Collection[tuple[str, int]]
) -> dict[tuple[str, int], AgentRecord]:
    """The registered ones of ``refs`` ((name, version) pairs), keyed by pair."""
    if not refs:
        return {}
    stmt = select(AgentRecord).where(
        AgentRecord.tenant_id == tenant_id,
        tuple_(AgentRecord.name, AgentRecord.version).in_(sorted(refs)),
    )
    return {(r.name, r.version): r for r in (await session.scalars(stmt)).all()}
