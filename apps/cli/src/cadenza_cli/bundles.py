"""Runnable example bundles: a directory with ``agents/*.yaml``, ``data/*.yaml``,
``collections/<name>/*``, ``triggers/*.yaml``, ``workflow.yaml`` and an optional
``inputs.json``.

``cadenza run DIR`` (and ``cadenza dev --run DIR``) registers the agents — handoff targets
before the agents that hand off to them, an unchanged agent is reused instead of getting a
new version — loads each data file into its dataset, uploads each collection's documents
and waits until they are indexed (bundle_documents.py), then starts the workflow as an
inline spec, like ``cadenza run FILE``. A bundle with triggers also registers its workflow
(triggers start registered workflows) and each trigger (an unchanged one is reused). Every problem names the file (and the field).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cadenza_client import ApiError, AsyncCadenza, NotFound, Run
from cadenza_triggers import TriggerSpec
from cadenza_workflow import AgentSpec, SpecValidationError, parse_agent
from cadenza_workflow.loading import load_document

from .bundle_documents import (
    INDEX_TIMEOUT_S,
    BundleCollection,
    CollectionProblem,
    deploy_collection,
    load_collections,
)
from .client import run_request, submit

WORKFLOW_FILES = ("workflow.yaml", "workflow.yml", "workflow.json")
DOCUMENT_SUFFIXES = (".yaml", ".yml", ".json")
INPUTS_FILE = "inputs.json"


class BundleError(Exception):
    """A bundle that cannot be run; the message names the file and field."""


@dataclass(frozen=True)
class BundleAgent:
    path: Path
    spec: AgentSpec
    text: bytes


@dataclass(frozen=True)
class BundleDataset:
    path: Path
    dataset: str
    records: int
    text: bytes


@dataclass(frozen=True)
class BundleTrigger:
    path: Path
    spec: dict[str, Any]


@dataclass(frozen=True)
class Bundle:
    root: Path
    agents: list[BundleAgent]  # in registration order: handoff targets first
    datasets: list[BundleDataset]
    workflow_path: Path
    inputs: dict[str, Any] = field(default_factory=dict)
    collections: list[BundleCollection] = field(default_factory=list)
    triggers: list[BundleTrigger] = field(default_factory=list)

    def shown(self, path: Path) -> str:
        """``path`` relative to the bundle's parent, as a user names it (``examples/x/...``)."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)


def is_bundle(target: str | Path) -> bool:
    path = Path(target)
    return path.is_dir()


def _documents(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in DOCUMENT_SUFFIXES and p.is_file())


def _read(path: Path, shown: str) -> tuple[bytes, Any]:
    text = path.read_bytes()
    try:
        return text, load_document(text, "application/json" if path.suffix == ".json" else None)
    except SpecValidationError as exc:
        detail = exc.errors[0].message if exc.errors else str(exc)
        raise BundleError(f"{shown}: {detail.removeprefix('workflow: ')}") from None


def _spec_problems(shown: str, exc: SpecValidationError) -> BundleError:
    lines = [f"{shown}: invalid agent definition"]
    lines += [f"  - {e.message}" for e in exc.errors]
    return BundleError("\n".join(lines))


def _load_agents(bundle_root: Path, shown: Any) -> list[BundleAgent]:
    agents: dict[str, BundleAgent] = {}
    for path in _documents(bundle_root / "agents"):
        text, _ = _read(path, shown(path))
        try:
            spec = parse_agent(text, "application/json" if path.suffix == ".json" else None)
        except SpecValidationError as exc:
            raise _spec_problems(shown(path), exc) from None
        if spec.name in agents:
            first = shown(agents[spec.name].path)
            raise BundleError(
                f"{shown(path)}: field name: agent {spec.name!r} is already defined in {first}"
            )
        agents[spec.name] = BundleAgent(path, spec, text)
    return _handoff_order(agents, shown)


def _handoff_order(agents: dict[str, BundleAgent], shown: Any) -> list[BundleAgent]:
    """Agents sorted so that each comes after the bundle agents it hands off to (targets
    outside the bundle must already be registered; the gateway checks them)."""
    ordered: list[BundleAgent] = []
    state: dict[str, str] = {}  # name → "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name) :], name]
            files = ", ".join(sorted({shown(agents[n].path) for n in cycle}))
            raise BundleError(
                f"{files}: field handoffs: handoff cycle {' → '.join(cycle)} (a target must be "
                "registered first: register one side without handoffs, see docs/agents.md)"
            )
        state[name] = "visiting"
        for target in agents[name].spec.handoffs:
            if target in agents:
                visit(target, [*path, name])
        state[name] = "done"
        ordered.append(agents[name])

    for name in sorted(agents):
        visit(name, [])
    return ordered


def _load_datasets(bundle_root: Path, shown: Any) -> list[BundleDataset]:
    datasets: dict[str, BundleDataset] = {}
    for path in _documents(bundle_root / "data"):
        text, doc = _read(path, shown(path))
        where = shown(path)
        if not isinstance(doc, Mapping):
            raise BundleError(f"{where}: must be a mapping {{dataset: name, records: [...]}}")
        name = doc.get("dataset", path.stem)
        if not isinstance(name, str) or not name:
            raise BundleError(f"{where}: field dataset: must be a dataset name")
        records = doc.get("records")
        if not isinstance(records, list):
            raise BundleError(f"{where}: field records: must be a list of {{key, data}}")
        if name in datasets:
            first = shown(datasets[name].path)
            raise BundleError(f"{where}: field dataset: {name!r} is already loaded by {first}")
        datasets[name] = BundleDataset(path, name, len(records), text)
    return list(datasets.values())


def load_bundle(root: str | Path) -> Bundle:
    """Read and check a bundle directory (nothing is sent). Raises :class:`BundleError`."""
    root = Path(root).resolve()
    probe = Bundle(root, [], [], root)

    def shown(path: Path) -> str:
        return probe.shown(path)

    workflow = next((root / n for n in WORKFLOW_FILES if (root / n).is_file()), None)
    if workflow is None:
        raise BundleError(f"{shown(root)}: a bundle needs a workflow.yaml (or .yml/.json)")
    _read(workflow, shown(workflow))  # syntax errors now, before anything is registered
    inputs: dict[str, Any] = {}
    inputs_path = root / INPUTS_FILE
    if inputs_path.is_file():
        try:
            loaded = json.loads(inputs_path.read_text())
        except ValueError as exc:
            raise BundleError(f"{shown(inputs_path)}: not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise BundleError(f"{shown(inputs_path)}: must be an object of input values")
        inputs = loaded
    try:
        collections = load_collections(root, shown)
    except CollectionProblem as exc:
        raise BundleError(str(exc)) from None
    return Bundle(
        root,
        triggers=_load_triggers(root, shown),
        agents=_load_agents(root, shown),
        datasets=_load_datasets(root, shown),
        workflow_path=workflow,
        inputs=inputs,
        collections=collections,
    )


def _load_triggers(bundle_root: Path, shown: Any) -> list[BundleTrigger]:
    triggers = []
    for path in _documents(bundle_root / "triggers"):
        _text, data = _read(path, shown(path))
        if not isinstance(data, dict):
            raise BundleError(f"{shown(path)}: a trigger is a mapping (name, topics, workflow…)")
        triggers.append(BundleTrigger(path, data))
    return triggers


def _normalized(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The trigger as the gateway stores it (defaults filled in), None when invalid (the
    gateway then answers with the problem)."""
    try:
        return TriggerSpec.model_validate(spec).model_dump(mode="json")
    except ValueError:
        return None


async def _register_triggers(client: AsyncCadenza, bundle: Bundle, out: TextIO) -> None:
    """Register the workflow (triggers start registered workflows), then each trigger
    unless its version in force is the same document."""
    path = bundle.workflow_path
    try:
        workflow = await client.register_workflow(
            path.read_bytes(), content_type=_yaml_or_json(path)
        )
    except ApiError as exc:
        raise BundleError(f"{bundle.shown(path)}: {exc}") from None
    print(f"  workflow {workflow.name}@{workflow.version:<24} registered", file=out)
    for trigger in bundle.triggers:
        try:
            await _register_trigger(client, trigger, out)
        except ApiError as exc:
            raise BundleError(f"{bundle.shown(trigger.path)}: {exc}") from None


async def _register_trigger(client: AsyncCadenza, trigger: BundleTrigger, out: TextIO) -> None:
    name = str(trigger.spec.get("name"))
    try:
        latest = await client.get_trigger(name)
    except NotFound:
        latest = None
    if latest is not None and latest.spec == _normalized(trigger.spec):
        print(f"  trigger {name}@{latest.version:<25} unchanged", file=out)
        return
    created = await client.register_trigger(trigger.spec)
    print(f"  trigger {created.name}@{created.version:<25} registered", file=out)


def _yaml_or_json(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/yaml"


async def _register_agent(client: AsyncCadenza, agent: BundleAgent, out: TextIO) -> str:
    """POST the agent unless its latest registered version is the same definition."""
    name = agent.spec.name
    try:
        latest = await client.get_agent(name)
    except NotFound:
        latest = None
    if latest is not None and latest.spec == agent.spec.to_dict():
        ref = f"{name}@{latest.version}"
        print(f"  agent {ref:<32} unchanged", file=out)
        return ref
    created = await client.register_agent(agent.text, content_type=_yaml_or_json(agent.path))
    ref = f"{created.name}@{created.version}"
    print(f"  agent {ref:<32} registered", file=out)
    return ref


async def deploy_bundle(
    client: AsyncCadenza,
    bundle: Bundle,
    inputs: Mapping[str, Any],
    out: TextIO = sys.stderr,
    *,
    index_timeout_s: float = INDEX_TIMEOUT_S,
) -> dict[str, Any]:
    """Register the agents, load the data and the documents (waiting up to
    ``index_timeout_s`` until all are indexed), then return the ``POST /v1/runs`` body
    (the workflow inline; ``inputs`` override the bundle's inputs.json)."""
    for agent in bundle.agents:
        try:
            await _register_agent(client, agent, out)
        except ApiError as exc:
            raise BundleError(f"{bundle.shown(agent.path)}: {exc}") from None
    for data in bundle.datasets:
        try:
            loaded = await client.load_dataset(
                data.dataset, data.text, content_type=_yaml_or_json(data.path)
            )
        except ApiError as exc:
            raise BundleError(f"{bundle.shown(data.path)}: {exc}") from None
        print(f"  dataset {data.dataset:<30} {loaded.records} records", file=out)
    for collection in bundle.collections:
        try:
            await deploy_collection(
                client, collection, bundle.shown, out, timeout_s=index_timeout_s
            )
        except CollectionProblem as exc:
            raise BundleError(str(exc)) from None
    if bundle.triggers:
        await _register_triggers(client, bundle, out)
    return run_request(str(bundle.workflow_path), {**bundle.inputs, **inputs})


async def submit_run(
    client: AsyncCadenza,
    target: str,
    inputs: Mapping[str, Any],
    idempotency_key: str | None = None,
    out: TextIO = sys.stderr,
) -> Run:
    """Start a run of ``target``: a bundle directory is deployed first (and its workflow's
    problems name its workflow file); a file or a registered name runs as ``cadenza run``
    always did."""
    if not is_bundle(target):
        return await submit(client, run_request(target, dict(inputs)), idempotency_key)
    bundle = load_bundle(target)
    print(f"bundle {bundle.shown(bundle.root)}:", file=out)
    body = await deploy_bundle(client, bundle, inputs, out)
    try:
        return await submit(client, body, idempotency_key)
    except ApiError as exc:
        raise BundleError(f"{bundle.shown(bundle.workflow_path)}: {exc}") from None
