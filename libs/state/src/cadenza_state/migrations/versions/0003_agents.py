"""Agents (versioned definitions), the accounting of every LLM turn and tool call, and the
reference data tools read.

Revision ID: 0003_agents
Revises: 0002_orchestrator_indexes
Create Date: 2026-11-21 00:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_agents"
down_revision: str | None = "0002_orchestrator_indexes"
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


def _call_columns(table: str) -> list[sa.Column | sa.Constraint]:
    """Columns shared by llm_calls and tool_calls: who, where, when."""
    return [
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=f"fk_{table}_task_id_tasks", ondelete="CASCADE"
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        _ts("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_agents"),
        sa.UniqueConstraint(
            "tenant_id", "name", "version", name="uq_agents_tenant_id_name_version"
        ),
    )
    op.create_table(
        "llm_calls",
        *_call_columns("llm_calls"),
        sa.Column("agent_version", sa.Integer(), nullable=True),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("response", JSON, nullable=True),
        sa.Column("tool_calls", JSON, nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", JSON, nullable=True),
        _ts("started_at"),
        _ts("created_at", nullable=False, now=True),
        sa.UniqueConstraint("task_id", "attempt", "turn", name="uq_llm_calls_task_id_attempt_turn"),
    )
    op.create_index("ix_llm_calls_run_id", "llm_calls", ["run_id"])
    op.create_index("ix_llm_calls_tenant_id_created_at", "llm_calls", ["tenant_id", "created_at"])
    op.create_table(
        "tool_calls",
        *_call_columns("tool_calls"),
        sa.Column("call_index", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(255), nullable=True),
        sa.Column("tool", sa.String(255), nullable=False),
        sa.Column("arguments", JSON, nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("error", sa.String(2048), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _ts("started_at"),
        _ts("created_at", nullable=False, now=True),
        sa.UniqueConstraint(
            "task_id", "attempt", "call_index", name="uq_tool_calls_task_id_attempt_call_index"
        ),
    )
    op.create_index("ix_tool_calls_run_id", "tool_calls", ["run_id"])
    op.create_table(
        "reference_records",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("data", JSON, nullable=False),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("tenant_id", "dataset", "key", name="pk_reference_records"),
    )


def downgrade() -> None:
    op.drop_table("reference_records")
    op.drop_table("tool_calls")
    op.drop_table("llm_calls")
    op.drop_table("agents")
