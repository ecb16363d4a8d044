"""Integer fields that take JSON values as JSON Schema reads them.

pydantic's lax mode coerces: `true` became the integer 1 and `"5"` the integer 5. Its strict
mode is stricter than JSON Schema instead: it refuses `5.0` for an integer, which JSON
Schema (and so the OpenAPI document and every generated client) counts as one. So integer
fields refuse booleans and strings here and keep pydantic's lax reading of `5.0` as 5,
while number and boolean fields use ``Field(strict=True)`` (strict floats take integers).

Why a validator per model and not an ``Annotated`` type: a before-validator inside the
annotation sits under the field's ``Field(ge=…)`` constraints, and pydantic then writes
them into the JSON Schema as unknown keywords (``"ge": 1`` instead of ``"minimum": 1``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator, field_validator


def json_integer(value: Any) -> Any:
    """``value`` unless it is a boolean or a string, which JSON does not count as numbers."""
    if isinstance(value, bool | str):
        kind = "a boolean" if isinstance(value, bool) else "a string"
        raise ValueError(f"must be a JSON integer, not {kind}")
    return value


def json_integers(*fields: str) -> Any:
    """A model attribute that makes ``fields`` refuse booleans and strings:
    ``_integers = json_integers("max_tokens")``."""

    def check(cls: type, value: Any) -> Any:
        return json_integer(value)

    return field_validator(*fields, mode="before")(check)


#: For ``Annotated[int, Field(ge=1), JSON_INTEGER]`` (after the constraints).
JSON_INTEGER = BeforeValidator(json_integer)
