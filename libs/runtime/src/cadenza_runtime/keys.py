"""Names of the hot-state (Redis) keys services share; HotState adds the deployment prefix."""

from __future__ import annotations


def task_lease(task_id: str) -> str:
    """Held by the worker executing the task; renewed by heartbeats; expiry = worker lost."""
    return f"lease:task:{task_id}"


def task_started(task_id: str, attempt: int) -> str:
    """Set when a worker begins an attempt (outlives the lease: tells 'lost' from 'queued')."""
    return f"task:{task_id}:{attempt}:started"


def task_done(task_id: str, attempt: int) -> str:
    """Set after an attempt's result was published: a redelivered task.ready is skipped."""
    return f"task:{task_id}:{attempt}:done"


def run_cancelled(run_id: str) -> str:
    """Set by the gateway when a run is cancelled; workers watch it to stop running tasks."""
    return f"run:{run_id}:cancelled"
