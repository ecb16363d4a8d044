"""Reading workflow documents from requests: media types, and guards that keep hostile
documents (alias bombs, absurd nesting, non-JSON values) from costing more than a 4xx.

Parsing runs in a worker thread: a 1 MiB YAML document takes long enough to stall every
other request if it ran on the event loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Literal

import orjson
import yaml
from cadenza_workflow import (
    BUILTIN_TOOLS,
    ErrorCode,
    SpecError,
    SpecValidationError,
    WorkflowSpec,
    load_spec,
)
from opentelemetry import trace
from starlette.concurrency import run_in_threadpool

from .problems import PayloadTooLarge, UnsupportedMediaType

tracer = trace.get_tracer("cadenza.gateway")

JSON_MEDIA_TYPES = frozenset({"application/json"})
YAML_MEDIA_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/vnd.yaml"}
)
MAX_ALIAS_EXPANSION = 100_000
"""YAML aliases may add at most this many nodes to a document (billion-laughs guard)."""
MAX_VALUE_DEPTH = 100
INLINE_PARSE_BYTES = 16 * 1024
"""Documents up to this size are parsed on the event loop: for them the thread-pool hop
(a queue hand-over and the GIL passed twice) costs more than the parse. Larger ones go
to a thread, so a long YAML parse does not hold the loop for its whole length."""
"""Deepest nesting of lists/objects in a spec or in inputs: events must still serialize
(pydantic refuses beyond ~255 levels) and no real workflow comes close."""

DocumentFormat = Literal["json", "yaml"]
# libyaml when available: the alias check composes the document a second time.
_COMPOSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def workflow_document_format(
    content_type: str | None, what: str = "a workflow"
) -> DocumentFormat | None:
    """The parser a Content-Type asks for; None (no header) = sniff; anything else → 415."""
    mt = media_type(content_type)
    if not mt:
        return None
    if mt in JSON_MEDIA_TYPES or mt.endswith("+json"):
        return "json"
    if mt in YAML_MEDIA_TYPES or mt.endswith("+yaml"):
        return "yaml"
    raise UnsupportedMediaType(
        f"cannot read {what} from {mt!r}: send application/yaml (or text/yaml) or application/json",
        accepted=sorted(JSON_MEDIA_TYPES | YAML_MEDIA_TYPES),
    )


def is_json_media_type(content_type: str | None) -> bool:
    mt = media_type(content_type)
    return mt in JSON_MEDIA_TYPES or mt.endswith("+json")


def _syntax(detail: str, field: str = "") -> SpecValidationError:
    return SpecValidationError([SpecError.at(ErrorCode.INVALID_SYNTAX, field, detail)])


def _alias_expansion(text: str) -> int:
    """How many nodes aliases add when the document is expanded (shared subtrees counted
    once per use); parses only the node graph, without constructing Python objects."""
    try:
        root = yaml.compose(text, Loader=_COMPOSER)
    except yaml.YAMLError:
        return 0  # the real parser reports the syntax error
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    literal = 0

    def size(node: yaml.Node) -> int:
        nonlocal literal
        key = id(node)
        if key in sizes:
            return sizes[key]  # an alias: the subtree again, not new text
        if key in open_nodes:
            raise _syntax("a YAML alias refers to a node that contains it (recursive data)")
        open_nodes.add(key)
        literal += 1
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        sizes[key] = total
        return total

    expanded = size(root) if root is not None else 0
    return expanded - literal


def check_yaml_aliases(text: str) -> None:
    if "&" not in text or "*" not in text:
        return  # no anchors or no aliases: nothing can expand
    added = _alias_expansion(text)
    if added > MAX_ALIAS_EXPANSION:
        raise _syntax(
            f"YAML aliases expand the document by {added} nodes (limit {MAX_ALIAS_EXPANSION})"
        )


def _load(
    source: bytes | Mapping[str, Any], fmt: DocumentFormat | None
) -> tuple[WorkflowSpec, dict[str, Any]]:
    content_type = {"json": "application/json", "yaml": "application/yaml", None: None}[fmt]
    try:
        if isinstance(source, bytes) and fmt != "json":
            text = source.decode("utf-8-sig", errors="replace")
            if fmt == "yaml" or not text.lstrip().startswith(("{", "[")):
                check_yaml_aliases(text)
        spec = load_spec(source, content_type=content_type, known_tools=BUILTIN_TOOLS)
        data = spec.to_dict()  # pydantic refuses (ValueError) to serialize absurd depths
    except RecursionError:
        raise _syntax("the document nests too deeply") from None
    except ValueError as exc:
        if "depth" not in str(exc):
            raise
        raise _syntax("the document nests too deeply") from None
    depth = nesting_depth(data)
    if depth > MAX_VALUE_DEPTH:
        raise _syntax(f"the document nests {depth} levels deep (limit {MAX_VALUE_DEPTH})")
    return spec, data


async def load_workflow_spec(
    source: bytes | Mapping[str, Any], fmt: DocumentFormat | None = None
) -> tuple[WorkflowSpec, dict[str, Any]]:
    """Parse and validate a workflow (YAML/JSON text, a dict, or a React Flow export)
    against the workers' built-in tools; returns the spec and its native JSON form (what
    is stored and sent). Raises :class:`SpecValidationError`."""
    with tracer.start_as_current_span("cadenza.gateway.load_spec") as span:
        if _size(source) <= INLINE_PARSE_BYTES:
            spec, data = _load(source, fmt)
        else:
            spec, data = await run_in_threadpool(_load, source, fmt)
        span.set_attribute("cadenza.workflow.name", spec.name)
        span.set_attribute("cadenza.workflow.tasks", len(spec.tasks))
        return spec, data


def _size(source: bytes | Mapping[str, Any]) -> int:
    """The document's size in bytes (a parsed body's, re-encoded: microseconds in C)."""
    if isinstance(source, bytes):
        return len(source)
    try:
        return len(orjson.dumps(source))
    except (TypeError, orjson.JSONEncodeError):  # not plain JSON: let the thread judge it
        return INLINE_PARSE_BYTES + 1


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what an event or a row will carry)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def find_non_json(value: Any, path: str) -> str | None:
    """The path of the first NaN/Infinity in ``value`` (Python's JSON reader accepts them,
    PostgreSQL and other JSON readers do not), else None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return where
        if isinstance(item, Mapping):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def ensure_fits_in_event(spec: dict[str, Any], inputs: dict[str, Any], limit: int) -> None:
    """A run carries its spec and inputs in its plan.requested event, which must fit in one
    Kafka message; refuse what could never be delivered instead of jamming the outbox."""
    size = json_size(spec) + json_size(inputs)
    if size > limit:
        raise PayloadTooLarge(
            f"the spec and inputs take {size} bytes as JSON; a run's plan.requested event "
            f"carries them and is limited to {limit} bytes",
            limit_bytes=limit,
        )
