"""A test that needs a service which is not there fails under ``CI=true`` and skips only
elsewhere: CI must run every test, a developer without the infra may not."""

from __future__ import annotations

import pytest
from support import service_missing

pytestmark = pytest.mark.unit


def test_under_ci_a_missing_service_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="kafka not reachable"):
        service_missing("kafka not reachable")


def test_without_ci_a_missing_service_skips_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="kafka not reachable"):
        service_missing("kafka not reachable")
