"""``cadenza_expect_rows(actual, expected)``: a guard a single statement can hold.

The orchestrator plans a run without a transaction of its own: it reads the run row with no
lock, and writes the plan (task rows, the run's change, the outbox) as ONE statement that
updates the run only where it is still ``pending``. This function turns "fewer rows than
expected" into an error, so the whole statement is undone and nothing is half-written;
the caller then plans the run the locked way (``cadenza_state.direct.Deferred``). Its
SQLSTATE, ``CZ409``, is Cadenza's own: no PostgreSQL error uses the ``CZ`` class.

PostgreSQL only (``cadenza dev``'s SQLite plans the locked way).

Revision ID: 0014_expect_rows
Revises: 0013_outbox_publisher
Create Date: 2026-12-05 17:00:00

Self-contained on purpose (no model imports).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_expect_rows"
down_revision: str | None = "0013_outbox_publisher"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION cadenza_expect_rows(actual BIGINT, expected BIGINT)
        RETURNS BIGINT LANGUAGE plpgsql AS $$
        BEGIN
            IF actual IS DISTINCT FROM expected THEN
                RAISE EXCEPTION 'cadenza: a guarded write matched % row(s), expected %',
                    actual, expected USING ERRCODE = 'CZ409';
            END IF;
            RETURN actual;
        END
        $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS cadenza_expect_rows(BIGINT, BIGINT)")
