"""`cadenza infra`: pure helpers (unit) and the real local services (integration)."""

from __future__ import annotations

import base64
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cadenza_cli.infra import infra_app, kafka_probe, ops, paths, process
from cadenza_cli.infra.kafka import random_cluster_id, render_server_properties
from cadenza_cli.infra.postgres import dsn, pg_bin_dir
from typer.testing import CliRunner

ALL = ("kafka", "postgres", "redis", "minio")


# ---------------------------------------------------------------- unit: config rendering


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.mark.unit
def test_server_properties_render_ports_and_data_dir(tmp_path: Path) -> None:
    template = (paths.infra_dir() / "kafka" / "server.properties").read_text()
    props = _properties(
        render_server_properties(
            template, host="127.0.0.1", port=29092, controller_port=29093, data_dir=tmp_path
        )
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path)
    assert props["process.roles"] == "broker,controller"


@pytest.mark.unit
def test_server_properties_are_test_friendly(tmp_path: Path) -> None:
    template = (paths.infra_dir() / "kafka" / "server.properties").read_text()
    props = _properties(
        render_server_properties(
            template, host="127.0.0.1", port=1, controller_port=2, data_dir=tmp_path
        )
    )
    expected = {
        "auto.create.topics.enable": "false",
        "num.partitions": "3",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    assert {k: props.get(k) for k in expected} == expected


@pytest.mark.unit
def test_cluster_id_is_kafka_uuid_format() -> None:
    for _ in range(50):
        cid = random_cluster_id()
        assert len(cid) == 22
        assert not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


@pytest.mark.unit
def test_pom_pins_the_same_kafka_version() -> None:
    from cadenza_cli.infra.kafka import KAFKA_VERSION

    pom = (paths.infra_dir() / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in pom


@pytest.mark.unit
def test_dsn() -> None:
    assert dsn(15432) == "postgresql+asyncpg://cadenza:cadenza@127.0.0.1:15432/cadenza"


@pytest.mark.unit
def test_pg_bin_dir_picks_highest_complete_version(tmp_path: Path) -> None:
    for version, complete in (("13", True), ("16", True), ("17", False)):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "postgres").touch()
        if complete:
            (bin_dir / "initdb").touch()
    assert pg_bin_dir(tmp_path) == tmp_path / "16" / "bin"
    assert pg_bin_dir(tmp_path / "missing") is None


# ---------------------------------------------------------------- unit: paths


@pytest.mark.unit
def test_paths_follow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CADENZA_STATE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("CADENZA_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("CADENZA_INFRA_REDIS_PORT", "26380")
    assert paths.state_dir() == tmp_path / "s"
    assert paths.cache_dir() == tmp_path / "c"
    assert paths.port("redis") == 26380
    monkeypatch.delenv("CADENZA_STATE_DIR")
    monkeypatch.delenv("CADENZA_INFRA_REDIS_PORT")
    assert paths.state_dir() == paths.repo_root() / ".cadenza"
    assert (paths.repo_root() / "uv.lock").is_file()
    assert paths.port("redis") == 16379


# ---------------------------------------------------------------- unit: pid files


@pytest.mark.unit
def test_pidfile_roundtrip_and_garbage(tmp_path: Path) -> None:
    pidfile = tmp_path / "x" / "svc.pid"
    assert process.read_pid(pidfile) is None
    process.write_pid(pidfile, 1234)
    assert process.read_pid(pidfile) == 1234
    pidfile.write_text("not a pid\n")
    assert process.read_pid(pidfile) is None


@pytest.mark.unit
def test_owned_pid_accepts_live_process_with_marker(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-x1"])
    try:
        pidfile = tmp_path / "svc.pid"
        process.write_pid(pidfile, proc.pid)
        assert process.owned_pid(pidfile, "marker-x1") == proc.pid
        assert pidfile.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.unit
def test_owned_pid_waits_out_an_exec_in_progress(tmp_path: Path) -> None:
    # Popen returns once the child's close-on-exec fds close, a moment before the kernel lays
    # out its new command line: a bare /proc read right then misses the marker about 1 in 100
    # spawns (CI saw it), and the pid file of a process that just started was called stale.
    pidfile = tmp_path / "svc.pid"
    for _ in range(400):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-x2"])
        try:
            assert "marker-x2" in process.settled_cmdline(proc.pid)
            process.write_pid(pidfile, proc.pid)
            assert process.owned_pid(pidfile, "marker-x2") == proc.pid
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.unit
def test_owned_pid_removes_stale_pidfiles(tmp_path: Path) -> None:
    pidfile = tmp_path / "svc.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    process.write_pid(pidfile, dead.pid)
    assert process.owned_pid(pidfile, "true") is None
    assert not pidfile.exists()

    # A live process that is not ours (pid reused): also stale.
    process.write_pid(pidfile, os.getpid())
    assert process.owned_pid(pidfile, "no-such-marker-zz") is None
    assert not pidfile.exists()


@pytest.mark.unit
def test_zombie_counts_as_dead() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 5
    while process.pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process.pid_alive(child.pid)  # exited but not reaped yet
    child.wait()


@pytest.mark.unit
def test_terminate_stops_a_process() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    assert process.terminate(proc.pid, timeout=5) is False
    assert proc.wait(timeout=5) == -15


@pytest.mark.unit
def test_terminate_falls_back_to_sigkill() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    # Its handler is in place once it says so (a fixed pause could lose that race when busy).
    with proc.stdout:
        assert proc.stdout.readline() == b"ignoring\n"
        assert process.terminate(proc.pid, timeout=0.5) is True
        assert proc.wait(timeout=5) == -9


@pytest.mark.unit
def test_infra_error_names_service_reason_and_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    text = process.InfraError("kafka", "not ready after 120s", log).describe(lines=3)
    assert text.startswith("ERROR kafka: not ready after 120s")
    assert str(log) in text
    assert "line 99" in text
    assert "line 96" not in text


# ---------------------------------------------------------------- unit: status and selection


@pytest.mark.unit
def test_format_status_table() -> None:
    rows = [
        ops.ServiceStatus("kafka", "127.0.0.1:19092", 42, "healthy"),
        ops.ServiceStatus("postgres", "127.0.0.1:15432", None, "stopped"),
    ]
    assert ops.format_status(rows).splitlines() == [
        "SERVICE   ADDRESS          PID  HEALTH",
        "kafka     127.0.0.1:19092  42   healthy",
        "postgres  127.0.0.1:15432  -    stopped",
    ]
    assert not ops.all_healthy(rows)
    assert ops.all_healthy(rows[:1])


@pytest.mark.unit
def test_select_services(tmp_path: Path) -> None:
    assert [s.name for s in ops.select(None, tmp_path, tmp_path)] == list(ALL)
    assert [s.name for s in ops.select(["redis", "kafka"], tmp_path, tmp_path)] == [
        "kafka",
        "redis",
    ]
    with pytest.raises(ValueError, match="bogus"):
        ops.select(["bogus"], tmp_path, tmp_path)


@pytest.mark.unit
def test_cli_rejects_unknown_service() -> None:
    result = CliRunner().invoke(infra_app, ["status", "--only", "bogus"])
    assert result.exit_code == 2


# ---------------------------------------------------------------- unit: kafka wire probe


@pytest.mark.unit
def test_probe_encodes_request_header() -> None:
    raw = kafka_probe.encode_request(18, 0, 7, b"")
    (size,) = struct.unpack(">i", raw[:4])
    assert size == len(raw) - 4
    assert struct.unpack(">hhi", raw[4:12]) == (18, 0, 7)


@pytest.mark.unit
def test_probe_parses_responses() -> None:
    body = struct.pack(">hi", 0, 2) + struct.pack(">hhh", 10, 0, 6) + struct.pack(">hhh", 18, 0, 4)
    assert kafka_probe.parse_api_versions(body) == {10: (0, 6), 18: (0, 4)}
    found = struct.pack(">ihh", 0, 0, -1) + struct.pack(">i", 1)
    assert kafka_probe.parse_find_coordinator_v1(found) == (0, 1)
    msg = b"not yet"
    loading = struct.pack(">ihh", 0, 15, len(msg)) + msg + struct.pack(">i", -1)
    assert kafka_probe.parse_find_coordinator_v1(loading) == (15, -1)


# ---------------------------------------------------------------- integration


def _cadenza(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cadenza_cli", "infra", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _pids(status_output: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^(\w+)\s+\S+:\d+\s+(\d+|-)\s+\w+", status_output, re.MULTILINE)
    }


@pytest.mark.integration
def test_status_reports_all_healthy(require_services: Callable[..., None]) -> None:
    require_services(*ALL)
    result = _cadenza("status", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ALL:
        assert re.search(rf"^{name}\s+127\.0\.0\.1:\d+\s+\d+\s+healthy$", result.stdout, re.M), (
            result.stdout
        )


@pytest.mark.integration
def test_second_up_is_quick_and_keeps_pids(require_services: Callable[..., None]) -> None:
    require_services(*ALL)
    before = _pids(_cadenza("status", timeout=60).stdout)
    started = time.monotonic()
    result = _cadenza("up", timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("already running") == len(ALL), result.stdout
    assert elapsed < 15, f"already-running `up` took {elapsed:.1f}s"
    after = _pids(_cadenza("status", timeout=60).stdout)
    assert after == before
    assert all(pid.isdigit() for pid in after.values())
