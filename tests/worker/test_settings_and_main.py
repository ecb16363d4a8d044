"""Settings from the environment, and `python -m cadenza_worker` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cadenza_worker import WorkerSettings
from support.imports import loaded_after


def test_defaults() -> None:
    settings = WorkerSettings()
    assert settings.worker_id.endswith(f"-{os.getpid()}")
    assert settings.consumer_group == "cadenza-workers"
    assert (settings.concurrency, settings.lease_ttl_s) == (64, 6.0)
    assert settings.heartbeat_interval_s == 2.0
    assert settings.claim_check_bytes == 262_144
    assert settings.http_allow_private is False
    assert settings.http_max_response_bytes == 1_048_576
    assert settings.metrics_port == 9102


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_WORKER_WORKER_ID", "w-7")
    monkeypatch.setenv("CADENZA_WORKER_CONCURRENCY", "4")
    monkeypatch.setenv("CADENZA_WORKER_HTTP_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("CADENZA_CLAIM_CHECK_BYTES", "1000")  # the platform-wide name works too
    settings = WorkerSettings()
    assert (settings.worker_id, settings.concurrency) == ("w-7", 4)
    assert settings.http_allow_private is True
    assert settings.claim_check_bytes == 1000
    monkeypatch.setenv("CADENZA_WORKER_CLAIM_CHECK_BYTES", "2000")
    assert WorkerSettings().claim_check_bytes == 2000
    assert WorkerSettings(claim_check_bytes=5).claim_check_bytes == 5


def test_every_setting_is_described() -> None:
    for name, info in WorkerSettings.model_fields.items():
        assert info.description, name


def test_main_runs_until_sigterm(tmp_path: Path, unique_id: str) -> None:
    env = {
        **os.environ,
        "CADENZA_BUS_BACKEND": "memory",
        "CADENZA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "CADENZA_REDIS_BACKEND": "memory",
        "CADENZA_OBJECT_STORE": "local",
        "CADENZA_OBJECT_STORE_DIR": str(tmp_path / "objects"),
        "CADENZA_WORKER_METRICS_PORT": "0",
        "CADENZA_WORKER_WORKER_ID": unique_id,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cadenza_worker"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        for line in proc.stderr:  # blocks until the process logs (or exits)
            if f"worker {unique_id} consuming" in line:
                break
            assert time.monotonic() < deadline, "worker did not start"
        else:
            pytest.fail(f"worker exited early with {proc.wait()}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_the_worker_does_not_load_langgraph_at_start() -> None:
    """A worker that runs only tool tasks never pays for LangGraph (~0.6 s of CPU at every
    process start). ``AgentLoop.compile`` loads it with the first agent task; the agent
    tests (tests/worker/test_worker_agents*.py, tests/e2e) run agents end to end."""
    libraries = {"langgraph", "langchain_core"}
    assert loaded_after("import cadenza_worker, cadenza_worker.agents", libraries) == set()
