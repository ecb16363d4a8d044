"""The calculator agent and prompt recorded in tests/worker/cassettes/agents.json (by
tests/worker/test_worker_agents_replay.py): three turns, the first two calling the
calculator. End-to-end tests replay them with the ``replay`` provider, slowed so that a
worker can be killed while it waits for an answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cluster import free_port

CASSETTE = Path(__file__).resolve().parents[1] / "worker" / "cassettes" / "agents.json"
CALC_AGENT: dict[str, Any] = {
    "name": "calc",
    "system_prompt": "You are a calculator assistant. Use the calculator tool for arithmetic.",
    "model": "local:smollm2-135m",
    "tools": ["calculator"],
    "max_iterations": 3,
}
ASK: dict[str, Any] = {
    "name": "ask",
    "tasks": [{"id": "ask", "agent": "calc", "prompt": "What is 17 * 3?"}],
}


def replay_env(delay_s: int) -> dict[str, str]:
    """A deployment's settings for answering from the cassette, ``delay_s`` per answer (and
    the worker's metrics on a free port, for the tests that read them)."""
    return {
        "CADENZA_LLM_CASSETTE_MODE": "replay",
        "CADENZA_LLM_CASSETTE_PATH": str(CASSETTE),
        "CADENZA_LLM_REPLAY_DELAY_S": str(delay_s),
        "CADENZA_WORKER_METRICS_PORT": str(free_port()),
    }
