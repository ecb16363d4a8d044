"""schemathesis hooks of the stateful phase of test_api_schemathesis.py (loaded through
``SCHEMATHESIS_HOOKS`` for that phase only).

The stateful run's config sets `workflow` of ``POST /v1/runs`` to the seeded workflow, so
that runs exist and their links are followed; a generated body that also holds an inline
`spec` would then name two sources (a documented 422, but a chain that goes nowhere), so
those bodies are dropped here. No JSON Schema override can remove a property."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    operation = context.operation
    if operation is None or operation.label != "POST /v1/runs":
        return True
    return not (isinstance(body, dict) and "spec" in body)
