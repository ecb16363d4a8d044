"""Two indexes every task paid for and nothing needed.

- ``ix_tasks_run_id``: the unique ``(run_id, node_id, item_index)`` leads with ``run_id``,
  so it serves every lookup by run; the second index cost each task row an index entry
  when it was inserted and another each time it was updated.
- ``ix_outbox_unpublished`` (``id`` where ``published_at IS NULL``): a published row is now
  deleted instead of marked, so every row is unpublished and the primary key serves the
  relay's scan.

Measured with ``bench/dispatch.py``: the database's log (WAL) per no-op task went from
4.3 kB to 2.9 kB with both changes (docs/benchmarks.md, eighteenth session).

Revision ID: 0016_lean_hot_writes
Revises: 0015_run_version
Create Date: 2026-12-06 09:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_lean_hot_writes"
down_revision: str | None = "0015_run_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tasks_run_id", table_name="tasks")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")


def downgrade() -> None:
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_tasks_run_id", "tasks", ["run_id"])
