"""History retention: tombstones of deleted runs, and indexes for what retention reads.

- ``deleted_runs``: written by the orchestrator's run retention in the transaction that
  deletes a run, so the API answers 410 Gone (when, why) instead of 404.
- ``triggered_events.created_at`` and ``schedule_fires.fire_time``: the trigger service's
  ledger retention reads the oldest rows first, a page at a time (docs/state.md,
  "Retention").
- ``dead_letters.resolved_at`` (partial: resolved letters only): run history retention
  deletes the letters an operator replayed or discarded long ago.

Revision ID: 0018_history_retention
Revises: 0017_run_retention
Create Date: 2026-12-06 14:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_history_retention"
down_revision: str | None = "0017_run_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "deleted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deleted_runs"),
    )
    op.create_index("ix_triggered_events_created_at", "triggered_events", ["created_at"])
    op.create_index("ix_schedule_fires_fire_time", "schedule_fires", ["fire_time"])
    op.create_index(
        "ix_dead_letters_resolved_at",
        "dead_letters",
        ["resolved_at"],
        postgresql_where=sa.text("resolved_at IS NOT NULL"),
        sqlite_where=sa.text("resolved_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_resolved_at", table_name="dead_letters")
    op.drop_index("ix_schedule_fires_fire_time", table_name="schedule_fires")
    op.drop_index("ix_triggered_events_created_at", table_name="triggered_events")
    op.drop_table("deleted_runs")
