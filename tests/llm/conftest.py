"""Fixtures of the LLM tests (helpers are in llm_support.py)."""

from __future__ import annotations

import pytest
from llm_support import FakeOpenAI, SleepRecorder


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()
