"""Process helpers: pid files, detached spawning, health waits, stopping, log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class InfraError(Exception):
    """A service could not be installed, started or stopped; says which, why and where to look."""

    def __init__(self, service: str, reason: str, log: Path | None = None) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason
        self.log = log

    def describe(self, lines: int = 25) -> str:
        text = f"ERROR {self.service}: {self.reason}"
        if self.log is not None:
            text += f"\n  log: {self.log}"
            last = tail(self.log, lines)
            if last:
                text += f"\n  --- last lines of {self.log.name} ---\n" + _indent(last)
        return text


def _indent(text: str) -> str:
    return "\n".join("  | " + line for line in text.splitlines())


def tail(path: Path, lines: int = 25) -> str:
    """Last ``lines`` lines of a (possibly large or missing) text file."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid(pidfile: Path, pid: int) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    tmp = pidfile.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pidfile)


def pid_alive(pid: int) -> bool:
    """True for a live process; zombies (exited, not yet reaped) count as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X", "")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is ours; stale pid files are removed.

    The ``marker`` check guards against pid reuse after a reboot or crash.
    """
    pid = read_pid(pidfile)
    if pid is not None and pid_alive(pid) and marker in settled_cmdline(pid):
        return pid
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    return None


def settled_cmdline(pid: int, wait: float = 1.0) -> str:
    """``cmdline(pid)``, waiting out an ``exec`` in progress.

    The kernel closes the close-on-exec fds (which is when ``Popen`` returns) before it lays out
    the new program's arguments, so a process that was just spawned can show an empty command
    line for a moment. A live user process always has one; only kernel threads have none, and
    for those this gives up after ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    while not (line := cmdline(pid)) and pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    return line


def tcp_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def spawn(
    cmd: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process that outlives the CLI (own session, output to ``log``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            # Popen(user=...) alone keeps root's groups; set them so the child is fully that user.
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )


def run(
    cmd: Sequence[str],
    *,
    service: str,
    what: str,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    timeout: float = 600,
    input: str | None = None,
) -> str:
    """Run a short command; on failure raise InfraError with its output (also appended to log)."""
    try:
        proc = subprocess.run(
            list(cmd),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            timeout=timeout,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    except subprocess.TimeoutExpired as e:
        raise InfraError(
            service, f"{what} timed out after {timeout:.0f}s: {' '.join(cmd)}", log
        ) from e
    except OSError as e:
        raise InfraError(service, f"{what} could not run {cmd[0]}: {e}", log) from e
    output = (proc.stdout or "") + (proc.stderr or "")
    if log is not None and output:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(f"--- {what}: {' '.join(cmd)}\n{output}\n")
    if proc.returncode != 0:
        last = "\n".join(output.strip().splitlines()[-15:])
        raise InfraError(
            service,
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{_indent(last)}",
            log,
        )
    return proc.stdout or ""


def wait_until(
    check: Callable[[], bool],
    *,
    service: str,
    what: str,
    timeout: float,
    log: Path | None,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.25,
) -> None:
    """Poll ``check`` until true; fail fast if ``proc`` exits, else after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise InfraError(
                service, f"process exited with code {proc.returncode} before {what}", log
            )
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise InfraError(service, f"not {what} after {timeout:.0f}s", log)
        time.sleep(interval)


def terminate(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM ``pid``, wait, then SIGKILL its process group. True if it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        time.sleep(0.1)
    # Services are started with start_new_session, so the group is exactly what we spawned.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True
