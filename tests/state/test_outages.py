"""What counts as "a backing store is down" (pause and 503) versus a bad request/message."""

from __future__ import annotations

import pytest
import redis.exceptions
import sqlalchemy.exc
from cadenza_events import NonRetryableError, RetryableError, Unavailable
from cadenza_runtime import is_outage

pytestmark = pytest.mark.unit


def _chained(outer: Exception, cause: BaseException) -> Exception:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise outer from exc
    except Exception as final:
        return final


@pytest.mark.parametrize(
    "exc",
    [
        sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError()),
        sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        sqlalchemy.exc.DBAPIError("SELECT 1", {}, Exception("x"), connection_invalidated=True),
        redis.exceptions.ConnectionError("Connection refused"),
        ConnectionRefusedError(111, "refused"),
        Unavailable("Kafka: down", code="bus_unavailable"),
        _chained(RuntimeError("wrapped"), ConnectionResetError()),
    ],
    ids=lambda e: type(e).__name__,
)
def test_outages_are_recognised(exc: BaseException) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        sqlalchemy.exc.ProgrammingError("SELEC", {}, Exception("syntax error")),
        ValueError("bad payload"),
        NonRetryableError("bad request"),
        RetryableError("flaky tool"),
        FileNotFoundError("no such file"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_bad_input_is_not_an_outage(exc: BaseException) -> None:
    assert not is_outage(exc)
