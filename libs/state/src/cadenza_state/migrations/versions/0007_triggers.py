"""Triggers (versioned), the dedupe ledger of triggered events, schedules and their fires;
runs.started_by (the event or tick that started a run).

Revision ID: 0007_triggers
Revises: 0006_provider_keys
Create Date: 2026-12-04 04:30:00

Self-contained on purpose (no model imports). Additive only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_triggers"
down_revision: str | None = "0006_provider_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _now() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("started_by", JSON, nullable=True))
    op.create_table(
        "triggers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        _now(),
        sa.PrimaryKeyConstraint("id", name="pk_triggers"),
        sa.UniqueConstraint(
            "tenant_id", "name", "version", name="uq_triggers_tenant_id_name_version"
        ),
    )
    op.create_table(
        "triggered_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("trigger_name", sa.String(255), nullable=False),
        sa.Column("dedupe_key", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(512), nullable=True),
        _now(),
        sa.PrimaryKeyConstraint("id", name="pk_triggered_events"),
        sa.UniqueConstraint(
            "tenant_id",
            "trigger_name",
            "dedupe_key",
            name="uq_triggered_events_tenant_id_trigger_name_dedupe_key",
        ),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.String(64), nullable=True),
        _now(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_schedules_tenant_id_name"),
    )
    op.create_index("ix_schedules_next_fire_at", "schedules", ["next_fire_at"])
    op.create_table(
        "schedule_fires",
        sa.Column("schedule_id", sa.String(64), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        _now(),
        sa.PrimaryKeyConstraint("schedule_id", "fire_time", name="pk_schedule_fires"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name="fk_schedule_fires_schedule_id_schedules",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_index("ix_schedules_next_fire_at", table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("triggered_events")
    op.drop_table("triggers")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("started_by")
