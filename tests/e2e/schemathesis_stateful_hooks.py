"""schemathesis hooks of the stateful phase of test_api_schemathesis.py (loaded through
``SCHEMATHESIS_HOOKS`` for that phase only).

The stateful run's config sets `workflow` of ``POST /v1/runs`` to the seeded workflow, so
that runs exist and their links are followed; a generated body that also holds an inline
`spec` would then name two sources (a documented 422, but a chain that goes nowhere), so
the `spec` is taken out here (mapped, not filtered: filtered examples count as invalid and
end hypothesis' search early). No config override can remove a property."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    operation = context.operation
    if operation is None or operation.label != "POST /v1/runs" or not isinstance(body, dict):
        return body
    return {key: value for key, value in body.items() if key != "spec"}
