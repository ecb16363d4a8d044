"""Run lineage (rerun / fork) and task cache keys.

Revision ID: 0010_lineage
Revises: 0008_budgets
Create Date: 2026-12-04 04:20:00

Additive: a run may name the run it was rerun or forked from (``parent_run_id``), what was
asked (``lineage``) and the outputs it may reuse (``replay``); a task records the key its
output is cached under (``cache_key``) and, when it was completed from that cache instead of
running, the task it reused (``reused_from``). Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_lineage"
down_revision: str | None = "0009_approvals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lineage", JSON, nullable=True))
        batch.add_column(sa.Column("replay", JSON, nullable=True))
        batch.create_index("ix_runs_parent_run_id", ["parent_run_id"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("cache_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reused_from", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("reused_from")
        batch.drop_column("cache_key")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent_run_id")
        batch.drop_column("replay")
        batch.drop_column("lineage")
        batch.drop_column("parent_run_id")
