"""Names of the hot-state (Redis) keys services share; HotState adds the deployment prefix."""

from __future__ import annotations


def task_lease(task_id: str) -> str:
    """Held by the worker executing the task (``{worker_id}:{attempt}``); alive while that
    worker's process heartbeat (``worker_alive``) is; a newer attempt takes it over."""
    return f"lease:task:{task_id}"


def task_started(task_id: str, attempt: int) -> str:
    """Set when a worker begins an attempt (outlives the lease: tells 'lost' from 'queued')."""
    return f"task:{task_id}:{attempt}:started"


def task_done(task_id: str, attempt: int) -> str:
    """Set after an attempt's result was published (``{status}:{epoch s}``): a redelivered
    task.ready is skipped; a marker older than the result timeout whose task is still
    dispatched means the result was never applied, and the sweeper dispatches it again."""
    return f"task:{task_id}:{attempt}:done"


def run_cancelled(run_id: str) -> str:
    """Set by the gateway when a run is cancelled; workers watch it to stop running tasks."""
    return f"run:{run_id}:cancelled"


def worker_alive(worker_id: str) -> str:
    """A worker process's heartbeat (one per process, not per task): while it exists, the
    tasks whose lease that worker holds are alive."""
    return f"worker:{worker_id}:alive"
