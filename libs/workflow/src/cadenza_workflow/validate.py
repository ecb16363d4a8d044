"""Semantic validation of a parsed spec: references, cycles, reachability, expressions."""

from __future__ import annotations

import difflib
import heapq
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ErrorCode, ExpressionError, SpecError, SpecValidationError
from .expressions import (
    FAN_OUT_NAMES,
    Expression,
    compile_expression,
    compile_template,
    find_templates,
)
from .inputs import check_default
from .spec import TaskSpec, WorkflowSpec, parse_spec

BASE_NAMES = frozenset({"inputs", "tasks", "run"})
"""Names every expression may read; ``item``/``index`` are added inside a for_each task."""


@dataclass(frozen=True)
class _Edge:
    """``before`` must finish before ``after`` may start; ``field`` is where it is declared."""

    before: str
    after: str
    owner: int
    field: str


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _edges(spec: WorkflowSpec, index: dict[str, int]) -> list[_Edge]:
    """Ordering edges between known tasks: ``needs`` and ``on_failure``; self-edges dropped."""
    edges: list[_Edge] = []
    for i, t in enumerate(spec.tasks):
        for j, need in enumerate(t.needs):
            if need in index and need != t.id:
                edges.append(_Edge(need, t.id, i, f"tasks[{i}].needs[{j}]"))
        if t.on_failure in index and t.on_failure != t.id:
            edges.append(_Edge(t.id, t.on_failure, i, f"tasks[{i}].on_failure"))
    return edges


def _first_index(spec: WorkflowSpec) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, t in enumerate(spec.tasks):
        index.setdefault(t.id, i)
    return index


def _reach(start: str, succ: dict[str, list[_Edge]]) -> set[str]:
    seen: set[str] = set()
    todo = [e.after for e in succ.get(start, [])]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(e.after for e in succ.get(node, []))
    return seen


class _Ancestors:
    """A task's ancestors as a lazily computed set: membership of a direct need is answered
    at once, anything else walks the predecessors once and remembers the result."""

    def __init__(self, tid: str, pred: dict[str, list[str]]) -> None:
        self._direct = pred.get(tid, [])
        self._pred = pred
        self._all: set[str] | None = None

    def __contains__(self, name: object) -> bool:
        if name in self._direct:
            return True
        if self._all is None:
            seen: set[str] = set()
            todo = list(self._direct)
            while todo:
                node = todo.pop()
                if node not in seen:
                    seen.add(node)
                    todo.extend(self._pred.get(node, []))
            self._all = seen
        return name in self._all


def _cycle_errors(spec: WorkflowSpec, index: dict[str, int], edges: list[_Edge]) -> list[SpecError]:
    """One ``cycle`` error per strongly connected component, with a shortest cycle path."""
    succ: dict[str, list[_Edge]] = {}
    for e in edges:
        succ.setdefault(e.before, []).append(e)
    # Kahn's algorithm first (linear): what it cannot order is a cycle or downstream of one;
    # the per-task reachability below (quadratic) then runs on that part only, usually none.
    indegree = dict.fromkeys(index, 0)
    for e in edges:
        if e.after in indegree:
            indegree[e.after] += 1
    ready = [tid for tid, n in indegree.items() if n == 0]
    while ready:
        for e in succ.get(ready.pop(), []):
            if e.after in indegree:
                indegree[e.after] -= 1
                if indegree[e.after] == 0:
                    ready.append(e.after)
    tangled = {tid for tid, n in indegree.items() if n > 0}
    if not tangled:
        return []
    reach = {tid: _reach(tid, succ) for tid in tangled}
    errors: list[SpecError] = []
    done: set[str] = set()
    for tid in sorted(tangled, key=index.__getitem__):
        if tid in done or tid not in reach[tid]:
            continue
        component = {v for v in reach[tid] if tid in reach[v]}
        done |= component
        # BFS from tid back to itself inside the component.
        parent: dict[str, _Edge] = {}
        queue = deque([tid])
        closing: _Edge | None = None
        while queue and closing is None:
            node = queue.popleft()
            for e in succ.get(node, []):
                if e.after == tid:
                    closing = e
                    break
                if e.after in component and e.after not in parent:
                    parent[e.after] = e
                    queue.append(e.after)
        assert closing is not None
        path = [tid]
        node = closing.before
        while node != tid:
            path.append(node)
            node = parent[node].before
        path = [tid, *reversed(path[1:]), tid]
        owner = spec.tasks[closing.owner].id
        errors.append(
            SpecError.at(
                ErrorCode.CYCLE,
                closing.field,
                f"dependency cycle {' → '.join(path)} (each task waits for the one before it)",
                owner,
            )
        )
    return errors


class _Validator:
    def __init__(self, spec: WorkflowSpec, known_tools: Collection[str] | None) -> None:
        self.spec = spec
        self.known_tools = set(known_tools) if known_tools is not None else None
        self.index = _first_index(spec)
        self.edges = _edges(spec, self.index)
        self.triggers: dict[str, list[str]] = {}  # fallback id -> tasks naming it in on_failure
        for t in spec.tasks:
            if t.on_failure is not None and t.on_failure != t.id:
                self.triggers.setdefault(t.on_failure, []).append(t.id)
        self.errors: list[SpecError] = []

    def add(self, code: ErrorCode, field: str, detail: str, task: str | None = None) -> None:
        self.errors.append(SpecError.at(code, field, detail, task))

    def run(self) -> list[SpecError]:
        self._inputs()
        for i, t in enumerate(self.spec.tasks):
            self._task_fields(i, t)
            self._task_references(i, t)
        self.errors.extend(_cycle_errors(self.spec, self.index, self.edges))
        self._reachability()
        self._expressions()
        return self.errors

    # -- inputs ----------------------------------------------------------------
    def _inputs(self) -> None:
        for name, decl in self.spec.inputs.items():
            if decl.has_default:
                err = check_default(name, decl.type, decl.default)
                if err is not None:
                    self.errors.append(err)
                if decl.required:
                    self.add(
                        ErrorCode.INVALID_FIELD,
                        f"inputs.{name}.required",
                        f"input '{name}' has a default, so it cannot be required",
                    )

    # -- per task --------------------------------------------------------------
    def _task_fields(self, i: int, t: TaskSpec) -> None:
        first = self.index[t.id]
        if first != i:
            self.add(
                ErrorCode.DUPLICATE_ID,
                f"tasks[{i}].id",
                f"task id '{t.id}' is already used by tasks[{first}]",
                t.id,
            )
        if t.kind == "tool":
            if t.tool is None:
                self.add(
                    ErrorCode.MISSING_FIELD,
                    f"tasks[{i}].tool",
                    "a kind=tool task needs 'tool'",
                    t.id,
                )
            for name in ("agent", "prompt"):
                if getattr(t, name) is not None:
                    detail = f"'{name}' is only valid for kind=agent"
                    self.add(ErrorCode.INVALID_FIELD, f"tasks[{i}].{name}", detail, t.id)
        else:
            if t.agent is None:
                detail = "a kind=agent task needs 'agent'"
                self.add(ErrorCode.MISSING_FIELD, f"tasks[{i}].agent", detail, t.id)
            if t.tool is not None:
                detail = "'tool' is only valid for kind=tool"
                self.add(ErrorCode.INVALID_FIELD, f"tasks[{i}].tool", detail, t.id)
        if (
            t.kind == "tool"
            and t.tool is not None
            and self.known_tools is not None
            and t.tool not in self.known_tools
        ):
            available = ", ".join(sorted(self.known_tools)) or "none"
            detail = f"unknown tool '{t.tool}'{_suggest(t.tool, self.known_tools)}"
            detail += f" (available: {available})"
            self.add(ErrorCode.UNKNOWN_TOOL, f"tasks[{i}].tool", detail, t.id)

    def _task_references(self, i: int, t: TaskSpec) -> None:
        for j, need in enumerate(t.needs):
            field = f"tasks[{i}].needs[{j}]"
            if need == t.id:
                self.add(ErrorCode.SELF_DEPENDENCY, field, f"task '{t.id}' needs itself", t.id)
            elif need not in self.index:
                detail = f"needs unknown task '{need}'{_suggest(need, self.index)}"
                self.add(ErrorCode.UNKNOWN_NEED, field, detail, t.id)
            elif t.fallback and self.spec.tasks[self.index[need]].on_failure == t.id:
                detail = (
                    f"fallback '{t.id}' runs only when '{need}' fails, so it cannot need it "
                    f"(it can read tasks.{need}.error without needing it)"
                )
                self.add(ErrorCode.INVALID_FIELD, field, detail, t.id)
        if t.on_failure is None:
            return
        field = f"tasks[{i}].on_failure"
        target = t.on_failure
        if target == t.id:
            detail = f"task '{t.id}' names itself in on_failure"
            self.add(ErrorCode.SELF_DEPENDENCY, field, detail, t.id)
        elif target not in self.index:
            detail = f"on_failure names unknown task '{target}'{_suggest(target, self.index)}"
            self.add(ErrorCode.UNKNOWN_FALLBACK, field, detail, t.id)
        elif not self.spec.tasks[self.index[target]].fallback:
            detail = f"on_failure names task '{target}', which is not marked fallback: true"
            self.add(ErrorCode.NOT_FALLBACK, field, detail, t.id)

    # -- reachability ----------------------------------------------------------
    def _reachability(self) -> None:
        tasks = self.spec.tasks
        reachable = set(self.index)
        reported: set[str] = set()
        changed = True
        while changed:
            changed = False
            for i, t in enumerate(tasks):
                if t.id not in reachable or i != self.index[t.id]:
                    continue
                field, detail = self._why_unreachable(i, t, reachable)
                if field:
                    reachable.discard(t.id)
                    changed = True
                    if t.id not in reported:
                        reported.add(t.id)
                        self.add(ErrorCode.UNREACHABLE, field, detail, t.id)

    def _why_unreachable(self, i: int, t: TaskSpec, reachable: set[str]) -> tuple[str, str]:
        if t.fallback:
            triggers = self.triggers.get(t.id, [])
            if not triggers:
                detail = f"fallback task '{t.id}' never runs: no task names it in on_failure"
                return f"tasks[{i}].fallback", detail
            if not any(s in reachable for s in triggers):
                names = ", ".join(f"'{s}'" for s in triggers)
                detail = (
                    f"fallback task '{t.id}' never runs: only named in on_failure by {names}, "
                    "which never run"
                )
                return f"tasks[{i}].fallback", detail
        for j, need in enumerate(t.needs):
            if need in self.index and need != t.id and need not in reachable:
                detail = f"task '{t.id}' never runs: it needs '{need}', which never runs"
                return f"tasks[{i}].needs[{j}]", detail
        return "", ""

    # -- expressions -----------------------------------------------------------
    def _visible(self) -> dict[str, _Ancestors]:
        """Tasks whose results a task may read: its ancestors via needs, plus (for a
        fallback) the tasks that name it in on_failure and their ancestors. Computed on
        first use per task (a 10,000-task DAG has ~50M ancestor pairs; expressions read
        a few of them)."""
        pred: dict[str, list[str]] = {}
        for e in self.edges:
            pred.setdefault(e.after, []).append(e.before)
        return {tid: _Ancestors(tid, pred) for tid in self.index}

    def _expressions(self) -> None:
        visible = self._visible()
        for i, t in enumerate(self.spec.tasks):
            names = BASE_NAMES | FAN_OUT_NAMES if t.for_each is not None else BASE_NAMES
            scope = visible[t.id]
            if t.when is not None:
                self._expression(t.when, f"tasks[{i}].when", t, names, scope)
            if isinstance(t.for_each, str):
                self._expression(t.for_each, f"tasks[{i}].for_each", t, BASE_NAMES, scope)
            elif t.for_each is not None:
                for path, text in find_templates(t.for_each, f"tasks[{i}].for_each"):
                    self._template(text, path, t, BASE_NAMES, scope)
            for path, text in find_templates(t.with_, f"tasks[{i}].with"):
                self._template(text, path, t, names, scope)
            if t.prompt is not None:
                for path, text in find_templates(t.prompt, f"tasks[{i}].prompt"):
                    self._template(text, path, t, names, scope)
        for path, text in find_templates(self.spec.output, "output"):
            self._template(text, path, None, BASE_NAMES, None)

    def _expression(
        self,
        text: str,
        field: str,
        task: TaskSpec,
        names: frozenset[str],
        scope: _Ancestors,
    ) -> None:
        try:
            expr = compile_expression(text)
        except ExpressionError as exc:
            self._invalid(exc, field, task.id)
            return
        self._check(expr, field, task, names, scope)

    def _template(
        self,
        text: str,
        field: str,
        task: TaskSpec | None,
        names: frozenset[str],
        scope: _Ancestors | None,
    ) -> None:
        try:
            template = compile_template(text)
        except ExpressionError as exc:
            self._invalid(exc, field, task.id if task else None)
            return
        for expr in template.expressions:
            self._check(expr, field, task, names, scope)

    def _invalid(self, exc: ExpressionError, field: str, task: str | None) -> None:
        detail = f"invalid expression {exc.expression!r}: {exc.message}"
        self.add(ErrorCode.INVALID_EXPRESSION, field, detail, task)

    def _check(
        self,
        expr: Expression,
        field: str,
        task: TaskSpec | None,
        names: frozenset[str],
        scope: _Ancestors | None,
    ) -> None:
        tid = task.id if task else None
        text = f"expression {expr.text!r}"
        for name in sorted(expr.names - names):
            if name in FAN_OUT_NAMES:
                detail = f"{text} uses '{name}', which is only defined in a task with for_each"
                if task is not None and task.for_each is not None:
                    detail = f"{text} uses '{name}', which is not defined in for_each itself"
            else:
                available = ", ".join(sorted(names))
                detail = f"{text} uses unknown name '{name}' (available: {available})"
            self.add(ErrorCode.UNKNOWN_NAME, field, detail, tid)
        for name in sorted(expr.input_refs - set(self.spec.inputs)):
            suggestion = _suggest(name, self.spec.inputs)
            detail = f"{text} reads inputs.{name}, but no such input is declared{suggestion}"
            self.add(ErrorCode.UNKNOWN_INPUT, field, detail, tid)
        for ref in sorted(expr.task_refs):
            if ref not in self.index:
                detail = f"{text} reads unknown task '{ref}'{_suggest(ref, self.index)}"
            elif task is not None and ref == task.id:
                detail = f"{text} reads the task's own result (tasks.{ref})"
            elif scope is not None and ref not in scope:
                detail = (
                    f"{text} reads tasks.{ref}, but '{ref}' is not an ancestor of "
                    f"'{tid}' (add it to needs)"
                )
            else:
                continue
            self.add(ErrorCode.INVALID_REFERENCE, field, detail, tid)


def validate_spec(spec: WorkflowSpec, known_tools: Collection[str] | None = None) -> None:
    """Check a parsed spec; raises :class:`SpecValidationError` listing every problem.

    ``known_tools`` (optional) is the set of tool names the workers offer.
    """
    errors = _Validator(spec, known_tools).run()
    if errors:
        raise SpecValidationError(errors)


def load_spec(
    source: str | bytes | Mapping[str, Any],
    content_type: str | None = None,
    known_tools: Collection[str] | None = None,
) -> WorkflowSpec:
    """:func:`parse_spec` then :func:`validate_spec`; raises :class:`SpecValidationError`."""
    spec = parse_spec(source, content_type)
    validate_spec(spec, known_tools)
    return spec


def topological_order(spec: WorkflowSpec) -> list[str]:
    """Task ids so that every task comes after the tasks it needs and after any task that
    names it in ``on_failure``; ties keep declaration order. Raises
    :class:`SpecValidationError` (code ``cycle``) if there is a cycle."""
    index = _first_index(spec)
    edges = _edges(spec, index)
    indegree = dict.fromkeys(index, 0)
    succ: dict[str, list[str]] = {}
    for e in edges:
        indegree[e.after] += 1
        succ.setdefault(e.before, []).append(e.after)
    ready = [(i, tid) for tid, i in index.items() if indegree[tid] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, tid = heapq.heappop(ready)
        order.append(tid)
        for nxt in succ.get(tid, []):
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                heapq.heappush(ready, (index[nxt], nxt))
    if len(order) < len(index):
        raise SpecValidationError(_cycle_errors(spec, index, edges))
    return order
