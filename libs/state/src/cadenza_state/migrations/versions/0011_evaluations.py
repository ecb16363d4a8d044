"""Evaluation results (`cadenza eval`, /v1/evaluations).

Revision ID: 0011_evaluations
Revises: 0006_provider_keys
Create Date: 2026-12-04 05:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_evaluations"
down_revision: str | None = "0010_lineage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("suite", sa.String(256), nullable=False),
        sa.Column("agent", sa.String(256), nullable=True),
        sa.Column("against", sa.String(256), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.Column("regressions", JSON, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
    )
    op.create_index("ix_evaluations_tenant_id", "evaluations", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_tenant_id", table_name="evaluations")
    op.drop_table("evaluations")
