"""The sandboxed evaluator behind workflow expressions.

Built on simpleeval's ``EvalWithCompoundTypes`` (never Python ``eval``), tightened for
workflow data:

* attribute access reads dict keys (``tasks.fetch.output.value``); the only other
  attributes are a small allow-list of non-mutating methods (``str.upper``, ``dict.get``…);
  anything starting with ``_`` is refused;
* a small allow-list of functions (:data:`FUNCTIONS`); ``range`` and ``sum`` are capped;
* limits on integer size, string size, f-string widths and the total size of any value an
  expression builds (:data:`MAX_VALUE_NODES`, :data:`MAX_VALUE_CHARS`, counted through
  shared references), so an expression cannot exhaust memory by repeating references;
  values read from the context are not limited (they already exist);
* printf-style ``%`` formatting on strings is refused (its width is unbounded).
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, ItemsView, Iterable, KeysView, Mapping, ValuesView
from typing import Any

from simpleeval import (
    DEFAULT_OPERATORS,
    DISALLOW_METHODS,
    AttributeDoesNotExist,
    EvalWithCompoundTypes,
    FeatureNotAvailable,
    IterableTooLong,
    NumberTooHigh,
)
from simpleeval import MAX_STRING_LENGTH as _SIMPLEEVAL_MAX_STRING

MAX_STRING_LENGTH: int = _SIMPLEEVAL_MAX_STRING
"""Longest string an expression may build by concatenation, repetition, join or replace."""
MAX_RANGE = 10_000
"""Most elements ``range()`` may produce."""
MAX_INT_BITS = 10_000
"""Largest integer (in bits, about 3,000 decimal digits) ``**``, ``*`` and ``<<`` may produce."""
MAX_FORMAT_WIDTH = 1_000
"""Largest width/precision in an f-string format spec."""
MAX_VALUE_NODES = 200_000
"""Most elements (counted through shared references) in any value an expression produces."""
MAX_VALUE_CHARS = 5_000_000
"""Most string characters (counted through shared references) in any value produced."""

CONSTANT_NAMES: dict[str, Any] = {
    "True": True,
    "False": False,
    "None": None,
    "true": True,
    "false": False,
    "null": None,
}
"""Names that are always defined; the lowercase spellings match JSON/YAML."""


# --------------------------------------------------------------------------- functions


def _range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise IterableTooLong(f"range() is limited to {MAX_RANGE} elements")
    return r


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _sum(values: Iterable[Any], start: int | float = 0) -> int | float:
    if not _is_number(start):
        raise TypeError("sum() adds numbers only")
    total: int | float = start
    for v in values:
        if not _is_number(v):
            raise TypeError(f"sum() adds numbers only, got {type(v).__name__}")
        total += v
    return total


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "sum": _sum,
    "sorted": sorted,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "round": round,
    "any": any,
    "all": all,
    "range": _range,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": set,
}
"""The functions expressions may call, by name."""


# --------------------------------------------------------------------------- operators


def _check_int_bits(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise NumberTooHigh(f"{what} would exceed {MAX_INT_BITS} bits")


def _safe_pow(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        _check_int_bits(math.ceil(math.log2(abs(a)) * b), "power")
    try:
        return a**b
    except OverflowError as exc:
        raise NumberTooHigh(f"power overflows: {exc}") from None


def _safe_mult(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        _check_int_bits(abs(a).bit_length() + abs(b).bit_length(), "product")
        return a * b
    for seq, n in ((a, b), (b, a)):
        if (
            isinstance(seq, str | list | tuple)
            and isinstance(n, int)
            and len(seq) * n > MAX_STRING_LENGTH
        ):
            raise IterableTooLong(f"repetition is limited to {MAX_STRING_LENGTH} elements")
    return a * b


def _safe_add(a: Any, b: Any) -> Any:
    sized = isinstance(a, str | list | tuple) and isinstance(b, str | list | tuple)
    if sized and len(a) + len(b) > MAX_STRING_LENGTH:
        raise IterableTooLong(f"concatenation is limited to {MAX_STRING_LENGTH} elements")
    return a + b


def _safe_lshift(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int) and b > 0:
        _check_int_bits(abs(a).bit_length() + b, "shift")
    return a << b


def _safe_mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        raise FeatureNotAvailable("'%' string formatting is not available; use an f-string")
    return a % b


OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    **DEFAULT_OPERATORS,
    ast.Pow: _safe_pow,
    ast.Mult: _safe_mult,
    ast.Add: _safe_add,
    ast.LShift: _safe_lshift,
    ast.Mod: _safe_mod,
}
"""The operators expressions may use (no ``@``)."""


# --------------------------------------------------------------------------- methods


def _str_join(sep: str) -> Callable[[Iterable[Any]], str]:
    def join(items: Iterable[Any]) -> str:
        parts = list(items)
        total = len(sep) * max(len(parts) - 1, 0)
        total += sum(len(p) for p in parts if isinstance(p, str))
        if total > MAX_STRING_LENGTH:
            raise IterableTooLong(f"join() result is limited to {MAX_STRING_LENGTH} characters")
        return sep.join(parts)

    return join


def _str_replace(s: str) -> Callable[..., str]:
    def replace(old: str, new: str, count: int = -1) -> str:
        n = s.count(old)
        if count >= 0:
            n = min(n, count)
        if len(s) + n * (len(new) - len(old)) > MAX_STRING_LENGTH:
            raise IterableTooLong(f"replace() result is limited to {MAX_STRING_LENGTH} characters")
        return s.replace(old, new, count)

    return replace


_STR_METHODS = frozenset(
    {
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "isidentifier",
        "islower",
        "isnumeric",
        "isprintable",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
    }
)

ALLOWED_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    float: frozenset({"is_integer"}),
}
"""Methods callable on values of each (exact) type; none of them mutates its receiver."""

METHOD_NAMES: frozenset[str] = frozenset().union(*ALLOWED_METHODS.values())
"""Every allowed method name (used by the static check at compile time)."""

_WRAPPED_STR_METHODS: dict[str, Callable[[str], Callable[..., Any]]] = {
    "join": _str_join,
    "replace": _str_replace,
}


def is_forbidden_attribute(name: str) -> bool:
    """True for attribute names the sandbox never allows (``_x``, ``__class__``, ``format``…)."""
    return name.startswith(("_", "func_")) or name in DISALLOW_METHODS


# --------------------------------------------------------------------------- values


def to_json_value(value: Any) -> Any:
    """Convert an evaluation result to plain JSON data (tuples/sets/views become lists).

    Raises ``TypeError``/``ValueError`` for values JSON cannot carry.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return value
    if isinstance(value, dict):
        return {json_key(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | range | KeysView | ValuesView | ItemsView):
        return [to_json_value(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_json_value(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    raise TypeError(f"a value of type {type(value).__name__} is not JSON data")


def json_type_name(value: Any) -> str:
    """The JSON type name of a value (``null``, ``boolean``, ``integer``, ``number``…)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def json_key(key: Any) -> str:
    """The JSON object key for a dict key (what ``json.dumps`` would write)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    raise TypeError(f"a {type(key).__name__} cannot be a JSON object key")


def to_text(value: Any) -> str:
    """How a value is written when interpolated into text.

    Strings as-is, ``null`` as empty text, booleans as ``true``/``false``, numbers as Python
    writes them, lists and objects as compact JSON.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(to_json_value(value), ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- evaluator

_WIDTH = re.compile(r"\d+")


class SandboxEvaluator(EvalWithCompoundTypes):
    """simpleeval's compound-type evaluator with the workflow rules above.

    One instance per evaluation (simpleeval keeps per-evaluation state).
    """

    def __init__(self, names: Mapping[str, Any]) -> None:
        super().__init__(
            operators=dict(OPERATORS),
            functions=dict(FUNCTIONS),
            names={**CONSTANT_NAMES, **names},
        )
        # id -> (object kept alive, nodes, chars): values are never mutated during an
        # evaluation (no mutating method is reachable), so sizes can be memoised.
        self._sizes: dict[int, tuple[Any, int, int]] = {}
        # Values read from the context (and their parts) are exempt from the size limits:
        # they already exist. Only values an expression builds are limited.
        self._from_context: dict[int, Any] = {}

    # -- limits --------------------------------------------------------------
    def _mark_from_context(self, value: Any) -> Any:
        if isinstance(value, dict | list | str):
            self._from_context[id(value)] = value
        return value

    def _is_from_context(self, value: Any) -> bool:
        return self._from_context.get(id(value)) is value

    def _check_disallowed_items(self, item: Any) -> None:
        if self._is_from_context(item):
            return
        nodes, chars = self._measure(item)
        if nodes > MAX_VALUE_NODES:
            raise IterableTooLong(f"value too large (more than {MAX_VALUE_NODES} elements)")
        if chars > MAX_VALUE_CHARS:
            raise IterableTooLong(f"value too large (more than {MAX_VALUE_CHARS} characters)")

    def _measure(self, item: Any) -> tuple[int, int]:
        if isinstance(item, str):
            return 1, len(item)
        if item is None or isinstance(item, bool | int | float):
            return 1, 0
        cached = self._sizes.get(id(item))
        if cached is not None and cached[0] is item:
            return cached[1], cached[2]
        if isinstance(item, dict):
            children: Iterable[Any] = (x for kv in item.items() for x in kv)
        elif isinstance(item, list | tuple | set | frozenset | KeysView | ValuesView | ItemsView):
            children = item
        else:
            super()._check_disallowed_items(item)  # modules, forbidden callables
            return 1, 0
        nodes, chars = 1, 0
        for child in children:
            n, c = self._measure(child)
            nodes += n
            chars += c
            if nodes > MAX_VALUE_NODES or chars > MAX_VALUE_CHARS:
                break
        self._sizes[id(item)] = (item, nodes, chars)
        return nodes, chars

    # -- names, subscripts, attribute access ----------------------------------
    def _eval_name(self, node: ast.Name) -> Any:
        value = super()._eval_name(node)
        if node.id in self.names and self.names[node.id] is value:
            self._mark_from_context(value)
        return value

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        value = container[self._eval(node.slice)]
        if self._is_from_context(container):
            self._mark_from_context(value)  # an element or a slice: no larger than its source
        return value

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        attr = node.attr
        if is_forbidden_attribute(attr):
            raise FeatureNotAvailable(f"access to attribute '{attr}' is not allowed")
        obj = self._eval(node.value)
        if isinstance(obj, dict) and attr in obj:
            value = obj[attr]
            if self._is_from_context(obj):
                self._mark_from_context(value)
            return value
        if attr in ALLOWED_METHODS.get(type(obj), frozenset()):
            if isinstance(obj, str) and attr in _WRAPPED_STR_METHODS:
                return _WRAPPED_STR_METHODS[attr](obj)
            return getattr(obj, attr)
        if isinstance(obj, dict):
            raise AttributeDoesNotExist(attr, self.expr)
        raise FeatureNotAvailable(
            f"'{type(obj).__name__}' value has no attribute or key '{attr}'"
            if obj is not None
            else f"cannot read '{attr}' of null"
        )

    # -- f-strings -------------------------------------------------------------
    def _eval_formattedvalue(self, node: ast.FormattedValue) -> Any:
        value = self._eval(node.value)
        if node.format_spec is None:
            return to_text(value)
        spec = self._eval(node.format_spec)
        if any(int(w) > MAX_FORMAT_WIDTH for w in _WIDTH.findall(spec)):
            raise NumberTooHigh(f"format widths are limited to {MAX_FORMAT_WIDTH}")
        return format(value, spec)


def evaluate_tree(tree: ast.expr, text: str, names: Mapping[str, Any]) -> Any:
    """Evaluate a parsed (and statically checked) expression; raises simpleeval/Python errors."""
    return SandboxEvaluator(names).eval(text, previously_parsed=tree)


__all__ = [
    "ALLOWED_METHODS",
    "CONSTANT_NAMES",
    "FUNCTIONS",
    "MAX_FORMAT_WIDTH",
    "MAX_INT_BITS",
    "MAX_RANGE",
    "MAX_STRING_LENGTH",
    "MAX_VALUE_CHARS",
    "MAX_VALUE_NODES",
    "METHOD_NAMES",
    "OPERATORS",
    "SandboxEvaluator",
    "evaluate_tree",
    "is_forbidden_attribute",
    "json_key",
    "json_type_name",
    "to_json_value",
    "to_text",
]
