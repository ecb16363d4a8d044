"""Budgets: limits given with a run request, and tenant limits per day / month.

Revision ID: 0008_budgets
Revises: 0006_provider_keys
Create Date: 2026-12-04 04:30:00

Self-contained on purpose (no model imports). Additive only. The ledger of settled spend
is ``llm_calls`` (one row per LLM turn with its tokens and cost), so no new ledger table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

revision: str = "0008_budgets"
down_revision: str | None = "0006_provider_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("budget", JSON, nullable=True))
    op.create_table(
        "tenant_budgets",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("max_tokens", sa.BigInteger(), nullable=True),
        sa.Column("max_usd", sa.Float(), nullable=True),
        sa.Column("on_exceeded", sa.String(16), nullable=False, server_default="stop"),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("tenant_id", "period", name="pk_tenant_budgets"),
    )


def downgrade() -> None:
    op.drop_table("tenant_budgets")
    op.drop_column("runs", "budget")
