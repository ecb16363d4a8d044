"""JSON documents as ``json`` instead of ``jsonb`` on PostgreSQL, so numbers round-trip.

JSONB keeps numbers as ``numeric``: ``1e308`` came back as a 309-digit integer and ``-0.0``
as ``0.0``. ``json`` keeps the text the application wrote. No query uses a JSONB operator
or index on these columns (they are read and written whole), so nothing else changes.

Every ``jsonb`` column of the schema is converted, found through the catalogue rather
than listed, so a table added by a migration merged before this one is covered too.
A no-op on SQLite (JSON is text there already).

Revision ID: 0012_json_numbers
Revises: 0011_evaluations
Create Date: 2026-12-04 10:40:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_json_numbers"
down_revision: str | None = "0011_evaluations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _columns(data_type: str) -> list[tuple[str, str]]:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = :t "
            "ORDER BY table_name, column_name"
        ),
        {"t": data_type},
    )
    return [(str(table), str(column)) for table, column in rows]


def _convert(source: str, target: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in _columns(source):
        op.execute(
            f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {target} '
            f'USING "{column}"::{target}'
        )


def upgrade() -> None:
    _convert("jsonb", "json")


def downgrade() -> None:
    _convert("json", "jsonb")
