"""Claim-check: large params arrive as an object-store reference, large outputs leave as one
(`runs/{run_id}/tasks/{task_id}/{attempt}/output.json`), so events stay small."""

from __future__ import annotations

import json
from typing import Any

from cadenza_events import TaskReady
from cadenza_state import ObjectNotFound, ObjectStore

from . import metrics
from .errors import ParamsUnavailableError
from .journal import ensure_json


def output_key(task: TaskReady) -> str:
    return f"runs/{task.run_id}/tasks/{task.task_id}/{task.attempt}/output.json"


class ClaimCheck:
    def __init__(self, objects: ObjectStore, threshold_bytes: int) -> None:
        self._objects = objects
        self._threshold = threshold_bytes

    async def load_params(self, task: TaskReady) -> dict[str, Any]:
        """The task's params, fetched from the object store when it carries `params_ref`.
        Missing or malformed params fail the task; a store outage raises (retried)."""
        if not task.params_ref:
            return dict(task.params or {})
        try:
            raw = await self._objects.get(task.params_ref)
        except ObjectNotFound as exc:
            raise ParamsUnavailableError(f"params {task.params_ref!r} are missing") from exc
        try:
            params = json.loads(raw)
        except ValueError as exc:
            raise ParamsUnavailableError(f"params {task.params_ref!r} are not JSON") from exc
        if not isinstance(params, dict):
            raise ParamsUnavailableError(f"params {task.params_ref!r} are not a JSON object")
        metrics.CLAIM_CHECKS.labels("params_in").inc()
        return params

    async def store_output(self, task: TaskReady, output: Any) -> tuple[Any, str | None]:
        """(output, None) when small enough to travel inline, else (None, object key)."""
        data = ensure_json(output, task.name).encode()
        if len(data) <= self._threshold:
            return output, None
        key = await self._objects.put(output_key(task), data, "application/json")
        metrics.CLAIM_CHECKS.labels("output_out").inc()
        return None, key
