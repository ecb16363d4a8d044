"""Checking a run's inputs against the workflow's declared inputs."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from .errors import ErrorCode, SpecError, SpecValidationError
from .sandbox import json_type_name
from .spec import InputType, WorkflowSpec


def coerce_input(value: Any, expected: InputType | None) -> tuple[bool, Any]:
    """Check ``value`` against a declared input type.

    Returns ``(ok, value)``; the value is normalised where that is lossless: an integral
    float for ``integer`` (``3.0`` → ``3``), a tuple for ``array``. ``integer`` and ``number``
    reject booleans; ``number`` rejects NaN and infinities.
    """
    if expected is None:
        return True, value
    if expected == "string":
        return isinstance(value, str), value
    if expected == "boolean":
        return isinstance(value, bool), value
    if expected == "integer":
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, value
    if expected == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, value
        return (math.isfinite(value), value)
    if expected == "array":
        if isinstance(value, tuple):
            return True, list(value)
        return isinstance(value, list), value
    if expected == "object":
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value), value
    return False, value


def _type_error(name: str, expected: str, value: Any, field: str | None = None) -> SpecError:
    detail = f"input '{name}' must be {_article(expected)} {expected}, got {json_type_name(value)}"
    if expected == "integer" and isinstance(value, float):
        detail += f" {value!r}"
    return SpecError.at(ErrorCode.INPUT_TYPE, field or f"inputs.{name}", detail)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def resolve_inputs(spec: WorkflowSpec, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The inputs a run sees: given values checked against their declared types, defaults
    applied, optional inputs without a default set to ``None``.

    Raises :class:`SpecValidationError` (codes ``missing_input``, ``input_type``,
    ``unknown_input``; field ``inputs.<name>``) listing every problem.
    """
    given = dict(inputs or {})
    errors: list[SpecError] = []
    resolved: dict[str, Any] = {}
    for name, decl in spec.inputs.items():
        if name in given:
            ok, value = coerce_input(given[name], decl.type)
            if ok:
                resolved[name] = value
            else:
                errors.append(_type_error(name, str(decl.type), given[name]))
        elif decl.is_required:
            what = f" ({decl.type})" if decl.type else ""
            errors.append(
                SpecError.at(
                    ErrorCode.MISSING_INPUT,
                    f"inputs.{name}",
                    f"required input '{name}'{what} is missing",
                )
            )
        else:
            resolved[name] = copy.deepcopy(decl.default) if decl.has_default else None
    for name in given:
        if name not in spec.inputs:
            declared = ", ".join(sorted(spec.inputs)) or "none"
            errors.append(
                SpecError.at(
                    ErrorCode.UNKNOWN_INPUT,
                    f"inputs.{name}",
                    f"unknown input '{name}' (declared: {declared})",
                )
            )
    if errors:
        raise SpecValidationError(errors)
    return resolved


def check_default(name: str, decl_type: InputType | None, default: Any) -> SpecError | None:
    """An ``input_type`` error when a declared default does not match the declared type."""
    ok, _ = coerce_input(default, decl_type)
    if ok or decl_type is None or default is None:  # `default: null` = optional, no value
        return None
    return _type_error(name, decl_type, default, field=f"inputs.{name}.default")
