"""The static shape of a run: a validated spec indexed for the state machine.

Built once per run (and cached, the spec of a run never changes), so handling a task result
costs O(successors + their needs) instead of re-reading the whole workflow.
"""

from __future__ import annotations

import ast
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cadenza_workflow import (
    TaskSpec,
    WorkflowSpec,
    compile_expression,
    compile_template,
    find_templates,
    parse_spec,
    resolve_inputs,
    validate_spec,
)

from .rows import RunRow


def task_id_for(run_id: str, node_id: str, item_index: int | None = None) -> str:
    """Deterministic task ids: re-planning (a redelivered plan.requested) can never mint a
    second set of tasks, and ids are safe in object keys and Redis keys."""
    base = f"{run_id}.{node_id}"
    return base if item_index is None else f"{base}.{item_index}"


def _reads_tasks_dynamically(tree: ast.AST) -> bool:
    """True when ``tasks`` is used other than as ``tasks.<id>`` / ``tasks['<id>']``
    (``tasks[name]``, ``len(tasks)``…): then which results it reads is known only at run time."""
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            if not (isinstance(child, ast.Name) and child.id == "tasks"):
                continue
            static = (isinstance(node, ast.Attribute) and node.value is child) or (
                isinstance(node, ast.Subscript)
                and node.value is child
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
            )
            if not static:
                return True
    return isinstance(tree, ast.Name) and tree.id == "tasks"  # the whole expression is `tasks`


def _expression_reads(texts: Iterable[str], templates: Iterable[str]) -> frozenset[str] | None:
    """Task ids read by these expressions/templates; None when some read is dynamic."""
    exprs = [compile_expression(t) for t in texts]
    for text in templates:
        exprs.extend(compile_template(text).expressions)
    refs: set[str] = set()
    for expr in exprs:
        if "tasks" not in expr.names:
            continue
        if _reads_tasks_dynamically(expr.tree):
            return None
        refs |= expr.task_refs
    return frozenset(refs)


@dataclass(frozen=True)
class Node:
    """One spec task and its links."""

    spec: TaskSpec
    needs: tuple[str, ...]
    dependants: tuple[str, ...]
    """Tasks listing this one in ``needs``."""
    triggers: tuple[str, ...]
    """For a fallback: the tasks naming it in ``on_failure``."""
    reads: frozenset[str] | None
    """Task ids its ``when``/``for_each``/``with``/``prompt`` read; None = dynamic."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def fan_out(self) -> bool:
        return self.spec.for_each is not None


@dataclass(frozen=True)
class Replay:
    """What a rerun or fork may take from its parent run instead of running (docs/replay.md).

    ``reuse`` maps a task to the cache key its parent output was recorded under: the output
    is reused only if the task's own key (computed when it becomes ready) is the same; a
    ``None`` key reuses it unconditionally (a parent recorded before keys existed).
    ``outputs`` are outputs replaced by hand (the task never runs); ``overrides`` are
    per-task agent overrides (``system_prompt``, ``model``) sent to the worker."""

    parent_run_id: str | None = None
    reuse: Mapping[str, str | None] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Replay:
        if not data:
            return cls()
        return cls(
            parent_run_id=data.get("parent_run_id"),
            reuse=dict(data.get("reuse") or {}),
            outputs=dict(data.get("outputs") or {}),
            overrides={k: dict(v) for k, v in (data.get("overrides") or {}).items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id,
            "reuse": dict(self.reuse),
            "outputs": dict(self.outputs),
            "overrides": {k: dict(v) for k, v in self.overrides.items()},
        }


@dataclass
class RunGraph:
    """A run's spec, resolved inputs and the indexes the state machine walks."""

    run_id: str
    spec: WorkflowSpec
    inputs: dict[str, Any]
    nodes: dict[str, Node]
    output_reads: frozenset[str] | None
    replay: Replay = field(default_factory=Replay)
    _visible: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _descendants: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def for_run(cls, run: RunRow) -> RunGraph:
        """The graph of a run row (locked with its spec, inputs and replay)."""
        if run.spec is None or run.inputs is None:
            raise ValueError(f"run {run.id}: locked without its spec (lock_runs(with_spec=…))")
        return cls.build(run.id, run.spec, run.inputs, run.replay)

    @classmethod
    def build(
        cls,
        run_id: str,
        spec_data: Mapping[str, Any],
        inputs: Mapping[str, Any],
        replay: Mapping[str, Any] | None = None,
    ) -> RunGraph:
        """Parse + validate the spec and resolve the inputs (raises ``SpecValidationError``)."""
        spec = parse_spec(spec_data)
        validate_spec(spec)
        resolved = resolve_inputs(spec, dict(inputs))
        dependants: dict[str, list[str]] = {t.id: [] for t in spec.tasks}
        triggers: dict[str, list[str]] = {t.id: [] for t in spec.tasks}
        for t in spec.tasks:
            for need in t.needs:
                dependants[need].append(t.id)
            if t.on_failure is not None:
                triggers[t.on_failure].append(t.id)
        nodes = {
            t.id: Node(
                spec=t,
                needs=tuple(t.needs),
                dependants=tuple(dependants[t.id]),
                triggers=tuple(triggers[t.id]),
                reads=_node_reads(t),
            )
            for t in spec.tasks
        }
        output_templates = [text for _, text in find_templates(spec.output, "output")]
        return cls(
            run_id=run_id,
            spec=spec,
            inputs=resolved,
            nodes=nodes,
            output_reads=_expression_reads((), output_templates),
            replay=Replay.from_json(replay),
        )

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    @property
    def roots(self) -> list[str]:
        """Tasks that start with the run: no needs, not a fallback."""
        return [n.id for n in self.nodes.values() if not n.needs and not n.spec.fallback]

    def prerequisites(self, node_id: str) -> tuple[str, ...]:
        """Tasks whose rows decide whether ``node_id`` may start: its needs and, for a
        fallback, the tasks that name it."""
        node = self.nodes[node_id]
        return node.needs + node.triggers

    def reads(self, node_id: str) -> frozenset[str]:
        """Tasks whose results the node's expressions may read (dynamic → all visible)."""
        node = self.nodes[node_id]
        return node.reads if node.reads is not None else self.visible(node_id)

    def output_tasks(self) -> frozenset[str]:
        return self.output_reads if self.output_reads is not None else frozenset(self.nodes)

    def visible(self, node_id: str) -> frozenset[str]:
        """Ancestors through needs, plus (for a fallback) its triggers and their ancestors."""
        if node_id not in self._visible:
            seen: set[str] = set()
            todo = list(self.prerequisites(node_id))
            while todo:
                nid = todo.pop()
                if nid not in seen:
                    seen.add(nid)
                    todo.extend(self.prerequisites(nid))
            self._visible[node_id] = frozenset(seen)
        return self._visible[node_id]

    def trigger_waits_on(self, fallback_id: str, failed: Iterable[str]) -> list[str]:
        """Triggers a fallback must see finished before it runs: every trigger except those
        downstream of a failed one (they cannot finish before the fallback recovers it)."""
        blocked: set[str] = set()
        for nid in failed:
            blocked |= self.descendants(nid)
        return [t for t in self.nodes[fallback_id].triggers if t not in blocked]

    def descendants(self, node_id: str) -> frozenset[str]:
        """Tasks downstream of ``node_id`` through needs and on_failure links."""
        if node_id in self._descendants:
            return self._descendants[node_id]
        seen: set[str] = set()
        todo = [node_id]
        while todo:
            node = self.nodes[todo.pop()]
            nxt = list(node.dependants)
            if node.spec.on_failure is not None:
                nxt.append(node.spec.on_failure)
            for nid in nxt:
                if nid not in seen:
                    seen.add(nid)
                    todo.append(nid)
        self._descendants[node_id] = frozenset(seen)
        return self._descendants[node_id]


def _node_reads(t: TaskSpec) -> frozenset[str] | None:
    texts = [t.when] if t.when is not None else []
    templates = [text for _, text in find_templates(t.with_, "with")]
    if isinstance(t.for_each, str):
        texts.append(t.for_each)
    elif t.for_each is not None:
        templates.extend(text for _, text in find_templates(t.for_each, "for_each"))
    if t.prompt is not None:
        templates.extend(text for _, text in find_templates(t.prompt, "prompt"))
    return _expression_reads(texts, templates)


class GraphCache:
    """LRU of built graphs by run id (a run's spec and inputs are immutable)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._graphs: OrderedDict[str, RunGraph] = OrderedDict()

    def get(self, run_id: str) -> RunGraph | None:
        graph = self._graphs.get(run_id)
        if graph is not None:
            self._graphs.move_to_end(run_id)
        return graph

    def put(self, graph: RunGraph) -> RunGraph:
        self._graphs[graph.run_id] = graph
        self._graphs.move_to_end(graph.run_id)
        while len(self._graphs) > self.size:
            self._graphs.popitem(last=False)
        return graph

    def forget(self, run_id: str) -> None:
        self._graphs.pop(run_id, None)
