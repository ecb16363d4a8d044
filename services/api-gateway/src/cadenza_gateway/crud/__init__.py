"""Data functions (``session`` is always a keyword argument; routes own transactions)."""

from .audit import record_audit
from .runs import (
    EVENT_SOURCE,
    cancel_run,
    create_run,
    get_run,
    get_run_by_idempotency_key,
    list_runs,
    list_tasks,
)
from .workflows import (
    get_workflow,
    insert_next_version,
    list_latest_workflows,
    list_workflow_versions,
)

__all__ = [
    "EVENT_SOURCE",
    "cancel_run",
    "create_run",
    "get_run",
    "get_run_by_idempotency_key",
    "get_workflow",
    "insert_next_version",
    "list_latest_workflows",
    "list_runs",
    "list_tasks",
    "list_workflow_versions",
    "record_audit",
]
