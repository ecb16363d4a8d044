"""Alembic migrations for cadenza_state (run with :func:`cadenza_state.migrate`)."""
