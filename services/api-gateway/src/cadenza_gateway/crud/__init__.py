"""Data functions (``session`` is always a keyword argument; routes own transactions)."""

from .audit import record_audit
from .collections import (
    count_documents,
    create_collection,
    delete_document,
    find_by_content,
    get_collection,
    get_document,
    list_collections,
    list_documents,
    queue_ingest,
)
from .runs import (
    EVENT_SOURCE,
    create_run,
    get_run,
    get_run_by_idempotency_key,
    list_runs,
    list_tasks,
    request_cancel,
    request_resume,
)
from .workflows import (
    get_workflow,
    insert_next_version,
    list_latest_workflows,
    list_workflow_versions,
)

__all__ = [
    "EVENT_SOURCE",
    "count_documents",
    "create_collection",
    "create_run",
    "delete_document",
    "find_by_content",
    "get_collection",
    "get_document",
    "get_run",
    "get_run_by_idempotency_key",
    "get_workflow",
    "insert_next_version",
    "list_collections",
    "list_documents",
    "list_latest_workflows",
    "list_runs",
    "list_tasks",
    "list_workflow_versions",
    "queue_ingest",
    "record_audit",
    "request_cancel",
    "request_resume",
]
