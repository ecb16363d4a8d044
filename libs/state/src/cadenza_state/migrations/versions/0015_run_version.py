"""``runs.version``: a counter every write of a run's state moves on by one.

The orchestrator applies a batch of plans or of results without a transaction of its own:
it reads the runs and their task rows with no lock and writes the batch as ONE statement
that updates each run only where its ``version`` is still the one it read (and moves it
on). Every other writer of a run's state — the locked way, the sweeper — moves it on too,
in the transaction that holds the run's lock, so a batch that read before them fails its
guard (``cadenza_expect_rows``, migration 0014) and is applied again the locked way.

Revision ID: 0015_run_version
Revises: 0014_expect_rows
Create Date: 2026-12-05 17:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_run_version"
down_revision: str | None = "0014_expect_rows"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column("runs", sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("runs", "version")
