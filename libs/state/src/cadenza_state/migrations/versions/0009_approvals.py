"""Held tool calls (approvals, effects in doubt), the dead-letter inbox, and the effect
journal's ``sent``/``done`` status.

Revision ID: 0009_approvals
Revises: 0008_budgets
Create Date: 2026-12-04 04:10:00

Self-contained on purpose (no model imports). Additive only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_approvals"
down_revision: str | None = "0008_budgets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _now() -> sa.Column[sa.DateTime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    with op.batch_alter_table("tool_effects") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="done"))
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(255), nullable=False),
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("call_index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("arguments", _JSON, nullable=True),
        sa.Column("reason", sa.String(4000), nullable=True),
        sa.Column("rule", sa.String(1000), nullable=True),
        sa.Column("on_timeout", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.String(4000), nullable=True),
        sa.Column("output", _JSON, nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        _now(),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_approvals_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
        sa.UniqueConstraint(
            "task_id",
            "attempt",
            "call_index",
            "kind",
            name="uq_approvals_task_id_attempt_call_index_kind",
        ),
    )
    op.create_index("ix_approvals_run_id", "approvals", ["run_id"])
    op.create_index("ix_approvals_task_id", "approvals", ["task_id"])
    op.create_index(
        "ix_approvals_tenant_id_status_created_at",
        "approvals",
        ["tenant_id", "status", "created_at"],
    )
    op.create_index(
        "ix_approvals_pending_expiry",
        "approvals",
        ["expires_at"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", _BIGINT, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("original_topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("consumer_group", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1024), nullable=True),
        sa.Column("headers", _JSON, nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.String(4000), nullable=False),
        sa.Column("error_code", sa.String(255), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("task_id", sa.String(255), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolved_by", sa.String(255), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        _now(),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.UniqueConstraint(
            "original_topic",
            "partition",
            "offset",
            "consumer_group",
            name="uq_dead_letters_original_topic_partition_offset_consumer_group",
        ),
    )
    op.create_index(
        "ix_dead_letters_tenant_id_status_id", "dead_letters", ["tenant_id", "status", "id"]
    )


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("approvals")
    with op.batch_alter_table("tool_effects") as batch:
        batch.drop_column("status")
