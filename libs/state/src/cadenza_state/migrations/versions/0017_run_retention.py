"""Run history retention: an index on when a run finished.

The orchestrator's retention pass (docs/state.md, "Retention") reads the runs that finished
before its cutoff, oldest first, a page at a time. Only finished runs have an entry, so the
index costs a run one entry, written once when it finishes.

Revision ID: 0017_run_retention
Revises: 0016_lean_hot_writes
Create Date: 2026-12-06 11:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_run_retention"
down_revision: str | None = "0016_lean_hot_writes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_finished_at",
        "runs",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_finished_at", table_name="runs")
