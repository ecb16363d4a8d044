"""Telling "a backing store is down" from "this request or message is bad".

An outage must pause work, never discard it (DESIGN §10): consumers retry such errors until
the store is back instead of dead-lettering (``ConsumerOptions.is_outage``), and the gateway
answers 503 with ``Retry-After`` instead of 500. The drivers raise unrelated types for a
lost connection, so they are listed here, in the one module that knows them all.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors
import urllib3.exceptions as http_errors
from cadenza_events import Unavailable

# SQLAlchemy wraps asyncpg's errors: a dropped or refused connection, a server shutting
# down (57P01) or starting up (57P03) all arrive as OperationalError/InterfaceError or as a
# DBAPIError flagged `connection_invalidated`; a pool timeout means no connection came back.
_DATABASE = (sa_errors.OperationalError, sa_errors.InterfaceError, sa_errors.TimeoutError)
_REDIS = (redis_errors.ConnectionError, redis_errors.TimeoutError)
# MinIO's client speaks urllib3: it gives up with MaxRetryError / NewConnectionError.
_OBJECTS = (http_errors.MaxRetryError, http_errors.NewConnectionError, http_errors.ProtocolError)
# Builtins: ConnectionRefusedError, ConnectionResetError, BrokenPipeError, … and socket timeouts.
_SOCKETS = (ConnectionError, TimeoutError)

OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    Unavailable,
    *_DATABASE,
    *_REDIS,
    *_OBJECTS,
    *_SOCKETS,
)


try:  # psycopg: the agents' LangGraph checkpointer, in the processes that have it
    import psycopg
except ImportError:  # pragma: no cover - every service but the worker
    psycopg = None  # type: ignore[assignment]


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then each error it was raised from (``__cause__``, else ``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _psycopg_outage(exc: BaseException) -> bool:
    """A lost or refused connection (no SQLSTATE, class 08) or a server shutting down (57P);
    not a cancelled statement."""
    if psycopg is None or not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says a backing store is away."""
    for current in causes(exc):
        if isinstance(current, OUTAGE_TYPES) or _psycopg_outage(current):
            return True
        if isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated:
            return True
    return False
