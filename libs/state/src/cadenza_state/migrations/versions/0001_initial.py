"""Initial schema: workflows, runs, tasks, task_attempts, outbox, tool_effects, audit_log.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00

Self-contained on purpose (no model imports): a revision must keep creating the schema it
created on the day it was written, whatever the models look like later.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        _ts("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint(
            "tenant_id", "name", "version", name="uq_workflows_tenant_id_name_version"
        ),
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("workflow_name", sa.String(255), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=True),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("output", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        _ts("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name="uq_runs_tenant_id_idempotency_key"
        ),
    )
    op.create_index(
        "ix_runs_tenant_id_status_created_at", "runs", ["tenant_id", "status", "created_at"]
    )

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("input", JSON, nullable=True),
        sa.Column("output", JSON, nullable=True),
        sa.Column("output_ref", sa.String(1024), nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("worker_id", sa.String(255), nullable=True),
        _ts("heartbeat_at"),
        _ts("ready_at"),
        _ts("started_at"),
        _ts("finished_at"),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_tasks_run_id_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "run_id", "node_id", "item_index", name="uq_tasks_run_id_node_id_item_index"
        ),
    )
    op.create_index("ix_tasks_run_id", "tasks", ["run_id"])
    op.create_index(
        "uq_tasks_run_id_node_id_single",
        "tasks",
        ["run_id", "node_id"],
        unique=True,
        postgresql_where=sa.text("item_index IS NULL"),
        sqlite_where=sa.text("item_index IS NULL"),
    )

    op.create_table(
        "task_attempts",
        sa.Column("task_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("error", JSON, nullable=True),
        sa.PrimaryKeyConstraint("task_id", "attempt", name="pk_task_attempts"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_task_attempts_task_id_tasks", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "outbox",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("key", sa.String(255), nullable=True),
        sa.Column("headers", JSON, nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        _ts("created_at", nullable=False, now=True),
        _ts("published_at"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )

    op.create_table(
        "tool_effects",
        sa.Column("task_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("call_index", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("result", JSON, nullable=True),
        _ts("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("task_id", "attempt", "call_index", name="pk_tool_effects"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_tool_effects_task_id_tasks", ondelete="CASCADE"
        ),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("data", JSON, nullable=True),
        _ts("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_id_created_at", "audit_log", ["tenant_id", "created_at"])


def downgrade() -> None:
    for table in (
        "audit_log",
        "tool_effects",
        "outbox",
        "task_attempts",
        "tasks",
        "runs",
        "workflows",
    ):
        op.drop_table(table)
