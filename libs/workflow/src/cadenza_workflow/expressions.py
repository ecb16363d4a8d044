"""Workflow expressions and ``${{ }}`` templates.

An *expression* is a small Python-like expression (``inputs.amount * 2``,
``tasks.fetch.output.status == 'ok'``) evaluated by the sandbox in :mod:`.sandbox` — never
by Python ``eval``. :func:`compile_expression` parses it once, refuses constructs the sandbox
does not support, and records which context names, tasks and inputs it references so that
validation can check them before a run starts.

A *template* is a string containing ``${{ expression }}`` blocks. A string that is exactly
one block evaluates to the expression's value (any JSON type); otherwise each block's value is
written into the text (see :func:`cadenza_workflow.sandbox.to_text`).
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from simpleeval import AttributeDoesNotExist, FunctionNotDefined, InvalidExpression, NameNotDefined

from .errors import ExpressionError
from .sandbox import (
    CONSTANT_NAMES,
    FUNCTIONS,
    MAX_FORMAT_WIDTH,
    MAX_VALUE_CHARS,
    METHOD_NAMES,
    OPERATORS,
    evaluate_tree,
    is_forbidden_attribute,
    json_type_name,
    to_json_value,
    to_text,
)

_DIGITS = re.compile(r"\d+")
TEMPLATE_OPEN = "${{"
TEMPLATE_CLOSE = "}}"
CONTEXT_NAMES = frozenset({"inputs", "tasks", "item", "index", "run"})
"""Every name an expression context can define."""
FAN_OUT_NAMES = frozenset({"item", "index"})
"""Names defined only inside a ``for_each`` task's ``with``/``when``/``prompt``."""
TASK_FIELDS = frozenset({"output", "status", "error"})
"""Fields of ``tasks.<id>``."""
RUN_FIELDS = frozenset({"id"})
"""Fields of ``run``."""
TASK_STATUSES = ("succeeded", "recovered", "failed", "skipped")
"""Values of ``tasks.<id>.status`` once a task has finished (``recovered``: it failed and its
``on_failure`` fallback succeeded; its ``output`` is the fallback's output)."""
MAX_EXPRESSION_LENGTH = 10_000
_MAX_CLOSE_CANDIDATES = 64  # '}}' positions tried when looking for the end of a block
MAX_FAN_OUT = 10_000
"""Most elements a ``for_each`` may produce (the engine plans 10,000 tasks in well under a
second; see docs/benchmarks.md)."""

_ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Expression,
        ast.BoolOp,
        ast.BinOp,
        ast.UnaryOp,
        ast.IfExp,
        ast.Dict,
        ast.Set,
        ast.List,
        ast.Tuple,
        ast.ListComp,
        ast.GeneratorExp,
        ast.DictComp,
        ast.comprehension,
        ast.Compare,
        ast.Call,
        ast.keyword,
        ast.FormattedValue,
        ast.JoinedStr,
        ast.Constant,
        ast.Attribute,
        ast.Subscript,
        ast.Slice,
        ast.Name,
        ast.Load,
        ast.Store,
        ast.And,
        ast.Or,
        *OPERATORS,
    }
)


@dataclass(frozen=True)
class Expression:
    """A compiled expression. Immutable and cached by :func:`compile_expression`."""

    text: str
    """The expression source (without ``${{ }}``)."""
    names: frozenset[str]
    """Free root names it reads (``inputs``, ``tasks``…; functions and constants excluded)."""
    task_refs: frozenset[str]
    """Task ids referenced statically as ``tasks.<id>`` or ``tasks['<id>']``."""
    input_refs: frozenset[str]
    """Input names referenced statically as ``inputs.<name>`` or ``inputs['<name>']``."""
    tree: ast.expr = field(repr=False, compare=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate against ``context`` (names → values); returns plain JSON data.

        Raises :class:`ExpressionError` for any failure (unknown name or key, type error,
        a sandbox limit, a result that is not JSON data…).
        """
        try:
            return to_json_value(evaluate_tree(self.tree, self.text, context))
        except ExpressionError:
            raise
        except NameNotDefined as exc:
            raise ExpressionError(self.text, f"name '{exc.name}' is not defined") from None
        except AttributeDoesNotExist as exc:
            raise ExpressionError(self.text, f"no key '{exc.attr}'") from None
        except FunctionNotDefined as exc:
            raise ExpressionError(self.text, f"unknown function '{exc.func_name}'") from None
        except InvalidExpression as exc:
            raise ExpressionError(self.text, str(exc)) from None
        except KeyError as exc:
            raise ExpressionError(self.text, f"key {exc.args[0]!r} not found") from None
        except RecursionError:
            raise ExpressionError(self.text, "value nested too deeply") from None
        except Exception as exc:
            raise ExpressionError(self.text, f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Template:
    """A compiled template: literal text parts and :class:`Expression` parts."""

    text: str
    parts: tuple[str | Expression, ...]

    @property
    def expressions(self) -> tuple[Expression, ...]:
        return tuple(p for p in self.parts if isinstance(p, Expression))

    @property
    def exact(self) -> Expression | None:
        """The expression when the whole string is exactly one ``${{ }}`` block."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Expression):
            return self.parts[0]
        return None

    def render(self, context: Mapping[str, Any]) -> Any:
        """The expression's value (exact template) or the interpolated text."""
        exact = self.exact
        if exact is not None:
            return exact.evaluate(context)
        out = "".join(p if isinstance(p, str) else to_text(p.evaluate(context)) for p in self.parts)
        if len(out) > MAX_VALUE_CHARS:
            raise ExpressionError(self.text, f"rendered text exceeds {MAX_VALUE_CHARS} characters")
        return out


# --------------------------------------------------------------------------- compile


class _Analyzer:
    """Static checks over the AST; records references."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.names: set[str] = set()
        self.task_refs: set[str] = set()
        self.input_refs: set[str] = set()

    def fail(self, message: str) -> NoReturn:
        raise ExpressionError(self.text, message)

    def visit(self, node: ast.AST, bound: frozenset[str]) -> None:
        if type(node) not in _ALLOWED_NODES:
            self.fail(f"{_describe(node)} is not allowed in expressions")
        if isinstance(node, ast.Name):
            if node.id not in bound and node.id not in FUNCTIONS and node.id not in CONSTANT_NAMES:
                self.names.add(node.id)
            return
        if isinstance(node, ast.Constant):
            if not (node.value is None or isinstance(node.value, bool | int | float | str)):
                self.fail(f"{type(node.value).__name__} literals are not allowed")
            return
        if isinstance(node, ast.Call):
            self._call(node, bound)
            return
        if isinstance(node, ast.List):
            for elt in node.elts:
                self.visit(elt.value if isinstance(elt, ast.Starred) else elt, bound)
            return
        if isinstance(node, ast.ListComp | ast.GeneratorExp | ast.DictComp):
            self._comprehension(node, bound)
            return
        if isinstance(node, ast.Attribute | ast.Subscript):
            self._reference(node, bound)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            self._no_percent_formatting(node)
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            self._format_spec(node.format_spec)
        for child in ast.iter_child_nodes(node):
            self.visit(child, bound)

    # What the sandbox refuses at run time whatever the data: refused here, at registration.
    def _no_percent_formatting(self, node: ast.BinOp) -> None:
        left = node.left
        if isinstance(left, ast.JoinedStr) or (
            isinstance(left, ast.Constant) and isinstance(left.value, str)
        ):
            self.fail("'%' string formatting is not available; use an f-string")

    def _format_spec(self, spec: ast.expr) -> None:
        """A format spec's widths must stay within the sandbox's limit; a width computed from
        constants alone (``f'{1:{10**9}}'``) is computed now."""
        parts = spec.values if isinstance(spec, ast.JoinedStr) else [spec]
        for part in parts:
            text: str | None = None
            if isinstance(part, ast.Constant):
                text = str(part.value)
            elif isinstance(part, ast.FormattedValue) and not any(
                isinstance(n, ast.Name) for n in ast.walk(part.value)
            ):
                try:
                    text = str(evaluate_tree(part.value, ast.unparse(part.value), {}))
                except Exception as exc:  # the sandbox's own refusal (too big a number…)
                    self.fail(f"format spec {ast.unparse(part.value)!r}: {exc}")
            if text is not None and any(int(w) > MAX_FORMAT_WIDTH for w in _DIGITS.findall(text)):
                self.fail(f"format widths are limited to {MAX_FORMAT_WIDTH}")

    def _call(self, node: ast.Call, bound: frozenset[str]) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in bound or func.id not in FUNCTIONS:
                available = ", ".join(sorted(FUNCTIONS))
                self.fail(f"unknown function '{func.id}' (available: {available})")
        elif isinstance(func, ast.Attribute):
            if is_forbidden_attribute(func.attr) or func.attr not in METHOD_NAMES:
                self.fail(f"method '{func.attr}' is not allowed")
            self.visit(func.value, bound)
        else:
            self.fail("only named functions and methods can be called")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail("'*' arguments are not allowed")
            self.visit(arg, bound)
        for kw in node.keywords:
            if kw.arg is None:
                self.fail("'**' arguments are not allowed")
            self.visit(kw.value, bound)

    def _comprehension(
        self, node: ast.ListComp | ast.GeneratorExp | ast.DictComp, bound: frozenset[str]
    ) -> None:
        scope = set(bound)
        for gen in node.generators:
            if gen.is_async:
                self.fail("async comprehensions are not allowed")
            self.visit(gen.iter, frozenset(scope))
            scope |= self._targets(gen.target)
            for cond in gen.ifs:
                self.visit(cond, frozenset(scope))
        inner = frozenset(scope)
        if isinstance(node, ast.DictComp):
            self.visit(node.key, inner)
            self.visit(node.value, inner)
        else:
            self.visit(node.elt, inner)

    def _targets(self, target: ast.expr) -> set[str]:
        if isinstance(target, ast.Name):
            return {target.id}
        if isinstance(target, ast.Tuple | ast.List):
            names: set[str] = set()
            for elt in target.elts:
                names |= self._targets(elt)
            return names
        self.fail("a comprehension can only assign plain names")

    def _reference(self, node: ast.Attribute | ast.Subscript, bound: frozenset[str]) -> None:
        if isinstance(node, ast.Attribute) and is_forbidden_attribute(node.attr):
            self.fail(f"attribute '{node.attr}' is not allowed")
        key = _static_key(node)
        base = node.value
        if key is None:
            return
        if isinstance(base, ast.Name) and base.id not in bound:
            if base.id == "tasks":
                self.task_refs.add(key)
            elif base.id == "inputs":
                self.input_refs.add(key)
            elif base.id == "run" and key not in RUN_FIELDS:
                self.fail(f"run has no field '{key}' (available: {', '.join(sorted(RUN_FIELDS))})")
        elif isinstance(base, ast.Attribute | ast.Subscript):
            root, task_id = base.value, _static_key(base)
            if (
                isinstance(root, ast.Name)
                and root.id == "tasks"
                and root.id not in bound
                and task_id is not None
                and key not in TASK_FIELDS
            ):
                fields = ", ".join(sorted(TASK_FIELDS))
                self.fail(f"tasks.{task_id} has no field '{key}' (available: {fields})")


def _static_key(node: ast.Attribute | ast.Subscript) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def _describe(node: ast.AST) -> str:
    names = {
        ast.Lambda: "lambda",
        ast.NamedExpr: "assignment (:=)",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.SetComp: "a set comprehension",
        ast.Starred: "'*' unpacking",
        ast.MatMult: "the '@' operator",
    }
    return names.get(type(node), f"'{type(node).__name__}'")


def _syntax_message(exc: SyntaxError, src: str) -> str:
    if exc.offset is None:
        where = ""
    elif 0 < exc.offset <= len(src):
        where = f" at column {exc.offset}"
    else:
        where = " at the end"
    msg = exc.msg if exc.msg.startswith("invalid syntax") else f"invalid syntax: {exc.msg}"
    return f"{msg}{where}"


@functools.lru_cache(maxsize=4096)
def compile_expression(text: str) -> Expression:
    """Parse and statically check an expression; raises :class:`ExpressionError`.

    A bare expression is expected (``inputs.amount > 100``); one wrapped as a single
    ``${{ … }}`` block is accepted too. Names are *recorded*, not checked — which names are
    available depends on where the expression is used (see :func:`validate_spec`).
    """
    src = text.strip()
    if src.startswith(TEMPLATE_OPEN):
        exact = compile_template(src).exact
        if exact is None:
            raise ExpressionError(text, "expected a single expression, not a text template")
        return exact
    if not src:
        raise ExpressionError(text, "empty expression")
    if len(src) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(src[:80] + "…", f"longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(src, _syntax_message(exc, src)) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(src, "expression is nested too deeply") from None
    analyzer = _Analyzer(src)
    try:
        analyzer.visit(tree, frozenset())
    except RecursionError:
        raise ExpressionError(src, "expression is nested too deeply") from None
    return Expression(
        text=src,
        names=frozenset(analyzer.names),
        task_refs=frozenset(analyzer.task_refs),
        input_refs=frozenset(analyzer.input_refs),
        tree=tree.body,
    )


def _scan_block(text: str, start: int) -> tuple[str, int]:
    """Find the end of the ``${{`` block at ``start``: the first ``}}`` that closes a valid
    expression (so ``}}`` inside dict literals and strings is handled)."""
    body = start + len(TEMPLATE_OPEN)
    first_error: SyntaxError | None = None
    end = text.find(TEMPLATE_CLOSE, body)
    tries = 0
    while end >= 0 and end - body <= MAX_EXPRESSION_LENGTH and tries < _MAX_CLOSE_CANDIDATES:
        tries += 1
        src = text[body:end].strip()
        if not src:
            raise ExpressionError(text[start : end + 2], "empty expression")
        try:
            ast.parse(src, mode="eval")
            return src, end + len(TEMPLATE_CLOSE)
        except SyntaxError as exc:
            first_error = first_error or exc
        except (RecursionError, MemoryError, ValueError):
            raise ExpressionError(src, "expression is nested too deeply") from None
        end = text.find(TEMPLATE_CLOSE, end + 1)
    if first_error is None:
        if end >= 0:
            raise ExpressionError(text[start : start + 80], "expression is too long")
        raise ExpressionError(text[start:], "unterminated '${{' (no closing '}}')")
    first_src = text[body : text.find(TEMPLATE_CLOSE, body)].strip()
    raise ExpressionError(first_src, _syntax_message(first_error, first_src))


@functools.lru_cache(maxsize=4096)
def compile_template(text: str) -> Template:
    """Split a string into literal text and compiled ``${{ }}`` expressions."""
    parts: list[str | Expression] = []
    pos = 0
    while (start := text.find(TEMPLATE_OPEN, pos)) >= 0:
        if start > pos:
            parts.append(text[pos:start])
        src, pos = _scan_block(text, start)
        parts.append(compile_expression(src))
    if pos < len(text):
        parts.append(text[pos:])
    return Template(text=text, parts=tuple(parts))


def is_template(value: Any) -> bool:
    """True when ``value`` is a string containing a ``${{`` block."""
    return isinstance(value, str) and TEMPLATE_OPEN in value


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render templates in ``value``, recursing through dicts (values only) and lists."""
    if isinstance(value, str):
        return compile_template(value).render(context) if TEMPLATE_OPEN in value else value
    if isinstance(value, Mapping):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, context) for v in value]
    return value


def find_templates(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield ``(path, string)`` for every template string inside ``value``."""
    if isinstance(value, str):
        if TEMPLATE_OPEN in value:
            yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            key = str(k)
            sub = f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"
            yield from find_templates(v, sub)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from find_templates(v, f"{path}[{i}]")


# --------------------------------------------------------------------------- runtime helpers

_UNSET: Any = object()


def build_context(
    *,
    inputs: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]] | None = None,
    run_id: str = "",
    item: Any = _UNSET,
    index: int | None = None,
) -> dict[str, Any]:
    """The expression context for a run.

    ``tasks`` maps task id → ``{output, status, error}`` for finished tasks (missing fields
    become ``None``). ``item``/``index`` are set for one instance of a ``for_each`` task.
    """
    context: dict[str, Any] = {
        "inputs": dict(inputs),
        "tasks": {
            tid: {"output": r.get("output"), "status": r.get("status"), "error": r.get("error")}
            for tid, r in (tasks or {}).items()
        },
        "run": {"id": run_id},
    }
    if item is not _UNSET:
        context["item"] = item
        context["index"] = index
    return context


def evaluate_condition(when: str | None, context: Mapping[str, Any]) -> bool:
    """Evaluate a task's ``when`` (``None`` → true); the result's truthiness decides."""
    if when is None:
        return True
    return bool(compile_expression(when).evaluate(context))


def evaluate_for_each(for_each: str | list[Any], context: Mapping[str, Any]) -> list[Any]:
    """Evaluate a task's ``for_each`` (an expression, or a list whose elements may be
    templates) to the list of fan-out items; at most :data:`MAX_FAN_OUT` elements."""
    if isinstance(for_each, str):
        expr = compile_expression(for_each)
        items, text = expr.evaluate(context), expr.text
    else:
        items, text = render(for_each, context), "for_each"
    if not isinstance(items, list):
        raise ExpressionError(text, f"for_each must produce a list, got {json_type_name(items)}")
    if len(items) > MAX_FAN_OUT:
        raise ExpressionError(text, f"for_each produced {len(items)} items (max {MAX_FAN_OUT})")
    return items
