"""Reading spec documents (YAML/JSON) and turning pydantic errors into :class:`SpecError`."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ErrorCode, SpecError, SpecValidationError

# --------------------------------------------------------------------------- YAML / JSON


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML loader: duplicate keys are errors, dates stay strings, and only
    true/false are booleans (YAML 1.2 style: ``on``/``yes``/``no`` are plain strings)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_DROPPED_TAGS = (_BOOL_TAG, "tag:yaml.org,2002:timestamp")
_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _syntax_error(detail: str) -> SpecValidationError:
    return SpecValidationError([SpecError.at(ErrorCode.INVALID_SYNTAX, "", detail)])


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise _syntax_error(
            f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise _syntax_error(f"JSON error: {exc}") from None


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid document"
        raise _syntax_error(f"YAML syntax error{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise _syntax_error(f"YAML error: {exc}") from None


def load_document(source: str | bytes, content_type: str | None = None) -> Any:
    """Parse YAML or JSON text into Python data (raises :class:`SpecValidationError`)."""
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _syntax_error(f"not UTF-8 text: {exc}") from None
    else:
        text = source
    ct = (content_type or "").split(";")[0].strip().lower()
    if "json" in ct:
        return _load_json(text)
    if "yaml" in ct or "yml" in ct:
        return _load_yaml(text)
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text, object_pairs_hook=_json_object)
        except ValueError:
            pass  # maybe YAML flow style; the YAML parser reports the error
    return _load_yaml(text)


# --------------------------------------------------------------------------- pydantic errors


def format_path(parts: Sequence[str | int]) -> str:
    """``('tasks', 2, 'needs', 0)`` → ``tasks[2].needs[0]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


def _clean_loc(loc: Sequence[str | int], data: Any, missing: bool) -> list[str | int]:
    """Keep the parts of a pydantic location that exist in the data (dropping union and
    validator tags such as ``str`` or ``[key]``); keep a missing field's name."""
    out: list[str | int] = []
    cur = data
    for i, part in enumerate(loc):
        in_map = isinstance(cur, Mapping) and isinstance(part, str) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if in_map or in_list:
            out.append(part)
            cur = cur[part]
        elif missing and i == len(loc) - 1 and isinstance(part, str):
            out.append(part)
    return out


def _task_of(loc: Sequence[str | int], data: Any) -> str | None:
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        tasks = data.get("tasks") if isinstance(data, Mapping) else None
        if isinstance(tasks, list) and 0 <= loc[1] < len(tasks):
            task = tasks[loc[1]]
            if isinstance(task, Mapping) and isinstance(task.get("id"), str):
                return str(task["id"])
    return None


def _model_at(loc: Sequence[str | int]) -> str:
    if len(loc) >= 3 and loc[0] == "tasks":
        return "retry" if len(loc) >= 4 and loc[2] == "retry" else "task"
    if len(loc) >= 3 and loc[0] == "inputs":
        return "input"
    return "workflow"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def errors_from_pydantic(
    exc: ValidationError, data: Any, model_fields: Mapping[str, list[str]]
) -> list[SpecError]:
    """Convert a pydantic ``ValidationError`` into :class:`SpecError` items with spec paths.

    Errors at the same place (one per member of a union type) are merged into one.
    """
    merged: dict[tuple[str, ErrorCode], tuple[str | None, list[str], str]] = {}
    for err in exc.errors(include_url=False):
        kind = err["type"]
        loc = _clean_loc(err["loc"], data, missing=kind == "missing")
        field = format_path(loc)
        task = _task_of(loc, data)
        got = ""
        if kind == "missing":
            code, detail = ErrorCode.MISSING_FIELD, "required field is missing"
        elif kind == "extra_forbidden":
            code = ErrorCode.UNKNOWN_FIELD
            name = str(loc[-1]) if loc else "?"
            detail = f"unknown field '{name}'"
            close = difflib.get_close_matches(name, model_fields[_model_at(loc)], n=1)
            if close:
                detail += f" (did you mean '{close[0]}'?)"
        else:
            code = ErrorCode.INVALID_FIELD
            detail = err["msg"].removeprefix("Value error, ").removeprefix("Input ")
            detail = detail[:1].lower() + detail[1:]
            got = f" (got {_short(err.get('input'))})"
        key = (field, code)
        if key not in merged:
            merged[key] = (task, [detail], got)
        elif detail not in merged[key][1]:
            merged[key][1].append(detail)  # one error per member of a union type
    return [
        SpecError.at(code, field, " or ".join(details) + got, task)
        for (field, code), (task, details, got) in merged.items()
    ]
