"""Outbox rows published by the process that wrote them: ``outbox.publisher``.

The orchestrator publishes the rows a batch wrote right after the commit and marks them
published later, many batches in one statement (it used to claim them in a transaction of
their own before sending: three round trips per batch). ``publisher`` names that process;
relays leave such a row alone until it is older than a grace period (``OutboxRelay``'s
``direct_grace_s``, 10 s: its writer died before sending it). NULL: a row for the relay
(low-rate writers).

Revision ID: 0013_outbox_publisher
Revises: 0012_json_numbers
Create Date: 2026-12-04 16:50:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_outbox_publisher"
down_revision: str | None = "0012_json_numbers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("publisher", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "publisher")
