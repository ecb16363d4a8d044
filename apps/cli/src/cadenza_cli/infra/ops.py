"""up / down / status over all services: parallel installs, one apt-get, health waits."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cadenza_cli.infra import process
from cadenza_cli.infra.base import Service
from cadenza_cli.infra.kafka import Kafka
from cadenza_cli.infra.minio import Minio
from cadenza_cli.infra.postgres import Postgres
from cadenza_cli.infra.prometheus import Prometheus
from cadenza_cli.infra.redis import Redis

SERVICE_TYPES: tuple[type[Service], ...] = (Kafka, Postgres, Redis, Minio)
SERVICE_NAMES: tuple[str, ...] = tuple(t.name for t in SERVICE_TYPES)
# Started only when asked for (`up --with prometheus`, or named in --only).
OPTIONAL_TYPES: tuple[type[Service], ...] = (Prometheus,)
OPTIONAL_NAMES: tuple[str, ...] = tuple(t.name for t in OPTIONAL_TYPES)
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def select(
    names: Sequence[str] | None, state: Path, cache: Path, extra: Sequence[str] = ()
) -> list[Service]:
    """``names`` (default: every core service) plus the optional ``extra`` ones."""
    wanted = [*(names or SERVICE_NAMES), *extra]
    known = SERVICE_NAMES + OPTIONAL_NAMES
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise ValueError(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [t(state, cache) for t in SERVICE_TYPES + OPTIONAL_TYPES if t.name in wanted]


def running_optional(state: Path, cache: Path) -> list[str]:
    """Optional services started earlier (down and status include them by default)."""
    return [t.name for t in OPTIONAL_TYPES if t(state, cache).pid() is not None]


class Reporter:
    """Thread-safe progress lines stamped with time since the command started."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.t0 = time.monotonic()
        self._echo = echo
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, service: str, message: str) -> None:
        with self._lock:
            self._echo(f"[{self.elapsed():6.1f}s] {service:<8} {message}")


@contextlib.contextmanager
def state_lock(state: Path) -> Iterator[None]:
    """Serialise concurrent up/down on one state dir (e.g. two test sessions starting infra)."""
    state.mkdir(parents=True, exist_ok=True)
    with (state / "infra.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Apt:
    """Runs ``apt-get update && apt-get install`` at most once for all services that need it."""

    def __init__(self, packages: Sequence[str], log: Path, report: Reporter) -> None:
        self.packages = sorted(set(packages))
        self.log = log
        self._report = report
        self._lock = threading.Lock()
        self._done = False
        self._error: process.InfraError | None = None

    def ensure(self, service: str) -> None:
        with self._lock:
            if self._error is not None:
                raise process.InfraError(service, self._error.reason, self._error.log)
            if self._done or not self.packages:
                return
            try:
                self._install()
            except process.InfraError as e:
                self._error = e
                raise process.InfraError(service, e.reason, e.log) from e
            self._done = True

    def _install(self) -> None:
        t = time.monotonic()
        self._report.say("apt", f"installing {' '.join(self.packages)}")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        # Package postinst scripts must not start the system services; we run our own.
        made_policy = not POLICY_RC.exists()
        if made_policy:
            POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
            POLICY_RC.chmod(0o755)
        try:
            process.run(
                ["apt-get", "update"],
                service="apt",
                what="apt-get update",
                log=self.log,
                env=env,
                timeout=900,
            )
            process.run(
                ["apt-get", "install", "-y", "--no-install-recommends", *self.packages],
                service="apt",
                what="apt-get install",
                log=self.log,
                env=env,
                timeout=1800,
            )
        finally:
            if made_policy:
                POLICY_RC.unlink(missing_ok=True)
        self._report.say("apt", f"done in {time.monotonic() - t:.1f}s")


def _foreign_port(svc: Service) -> int | None:
    return next((p for p in svc.ports() if process.tcp_open(svc.host, p)), None)


def up_one(svc: Service, apt: Apt, report: Reporter) -> None:
    t = time.monotonic()

    def say(msg: str) -> None:
        report.say(svc.name, msg)

    pid = svc.pid()
    if pid is not None:
        if not svc.healthy():
            say(f"running (pid {pid}) but not healthy yet, waiting")
            process.wait_until(
                svc.healthy,
                service=svc.name,
                what="healthy",
                timeout=svc.start_timeout,
                log=svc.log,
            )
        say(f"already running at {svc.address} (pid {pid}), healthy")
        return
    busy = _foreign_port(svc)
    if busy is not None:
        raise process.InfraError(
            svc.name,
            f"port {busy} is already in use by a process not started from "
            f"{svc.dir.parent} (stop it or set CADENZA_INFRA_{svc.name.upper()}_PORT)",
            svc.log,
        )
    if svc.apt_packages():
        apt.ensure(svc.name)
    svc.dir.mkdir(parents=True, exist_ok=True)
    svc.install(say)
    offset = svc.log_size()
    proc = svc.start(say)
    process.write_pid(svc.pidfile, proc.pid)
    process.wait_until(
        lambda: svc.ready(offset),
        service=svc.name,
        what="ready",
        timeout=svc.start_timeout,
        log=svc.log,
        proc=proc,
    )
    svc.after_start(say)
    process.wait_until(
        svc.healthy, service=svc.name, what="healthy", timeout=30, log=svc.log, proc=proc
    )
    say(f"started at {svc.address} (pid {proc.pid}), healthy in {time.monotonic() - t:.1f}s")


def up(services: Sequence[Service], state: Path, report: Reporter) -> list[process.InfraError]:
    apt = Apt([p for s in services for p in s.apt_packages()], state / "apt.log", report)
    return _parallel(services, lambda s: up_one(s, apt, report))


def down_one(svc: Service, report: Reporter, purge: bool) -> None:
    t = time.monotonic()
    pid = svc.pid()
    if pid is None:
        report.say(svc.name, "not running")
    else:
        killed = svc.stop(pid)
        svc.pidfile.unlink(missing_ok=True)
        how = "killed (SIGKILL)" if killed else "stopped"
        report.say(svc.name, f"{how} pid {pid} in {time.monotonic() - t:.1f}s")
    if purge and svc.dir.exists():
        shutil.rmtree(svc.dir)
        report.say(svc.name, f"purged {svc.dir}")


def down(services: Sequence[Service], report: Reporter, purge: bool) -> list[process.InfraError]:
    return _parallel(services, lambda s: down_one(s, report, purge))


def _parallel(
    services: Sequence[Service], fn: Callable[[Service], None]
) -> list[process.InfraError]:
    errors: list[process.InfraError] = []

    def guarded(svc: Service) -> None:
        try:
            fn(svc)
        except process.InfraError as e:
            errors.append(e)
        except Exception as e:  # report, don't lose other services' results
            errors.append(process.InfraError(svc.name, f"{type(e).__name__}: {e}", svc.log))

    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        list(pool.map(guarded, services))
    order = {s.name: i for i, s in enumerate(services)}
    return sorted(errors, key=lambda e: order.get(e.service, len(order)))


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    health: str  # healthy | unhealthy | stopped


def status_of(svc: Service) -> ServiceStatus:
    pid = svc.pid()
    health = "stopped" if pid is None else "healthy" if svc.healthy() else "unhealthy"
    return ServiceStatus(svc.name, svc.address, pid, health)


def statuses(services: Sequence[Service]) -> list[ServiceStatus]:
    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        return list(pool.map(status_of, services))


def format_status(rows: Sequence[ServiceStatus]) -> str:
    table = [("SERVICE", "ADDRESS", "PID", "HEALTH")] + [
        (r.name, r.address, str(r.pid) if r.pid is not None else "-", r.health) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in table
    )


def all_healthy(rows: Sequence[ServiceStatus]) -> bool:
    return all(r.health == "healthy" for r in rows)
