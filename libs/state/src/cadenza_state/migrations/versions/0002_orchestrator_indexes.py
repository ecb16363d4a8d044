"""Partial indexes for the orchestrator: open tasks per run, dispatched tasks by status.

Revision ID: 0002_orchestrator_indexes
Revises: 0001_initial
Create Date: 2025-01-02 00:00:00

"Is anything left in this run?" is asked after every task result and the sweeper scans
dispatched tasks every second; both must cost the same whatever the size of the history.
Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_orchestrator_indexes"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status IN ('pending', 'ready', 'running')"
_DISPATCHED = "status IN ('ready', 'running')"


def upgrade() -> None:
    op.create_index(
        "ix_tasks_run_id_open",
        "tasks",
        ["run_id"],
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )
    op.create_index(
        "ix_tasks_status_dispatched",
        "tasks",
        ["status", "ready_at"],
        postgresql_where=sa.text(_DISPATCHED),
        sqlite_where=sa.text(_DISPATCHED),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_status_dispatched", table_name="tasks")
    op.drop_index("ix_tasks_run_id_open", table_name="tasks")
