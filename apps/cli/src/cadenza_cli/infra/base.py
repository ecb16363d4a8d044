"""The common shape of an infra service, so up/down/status can loop over them."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from cadenza_cli.infra import process
from cadenza_cli.infra.paths import HOST

Say = Callable[[str], None]


class Service(ABC):
    """One local service: its files live in ``<state>/<name>/``, its downloads under ``cache``."""

    name: ClassVar[str]
    # Substring of /proc/<pid>/cmdline that proves a pid from the pid file is still ours.
    marker: ClassVar[str]
    start_timeout: ClassVar[float] = 60.0
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, state: Path, cache: Path) -> None:
        self.dir = state / self.name
        self.cache = cache

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def host(self) -> str:
        return HOST

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def ports(self) -> list[int]:
        """Every port the service binds; checked for foreign listeners before starting."""
        return [self.port]

    def apt_packages(self) -> list[str]:
        """Debian packages still needed (installed once for all services, before install())."""
        return []

    def install(self, say: Say) -> None:  # noqa: B027 - optional hook
        """Download or build whatever is missing into the cache; no-op when cached."""

    @abstractmethod
    def start(self, say: Say) -> subprocess.Popen[bytes]:
        """First-run setup (if needed) then spawn the long-running process."""

    def ready(self, log_offset: int) -> bool:
        """Startup is complete; ``log_offset`` is where this start's output begins in the log."""
        return self.healthy()

    def after_start(self, say: Say) -> None:  # noqa: B027 - optional hook
        """Idempotent setup that needs the running service (roles, databases)."""

    @abstractmethod
    def healthy(self) -> bool: ...

    def pid(self) -> int | None:
        return process.owned_pid(self.pidfile, self.marker)

    def stop(self, pid: int) -> bool:
        """Stop our process; True if it needed SIGKILL."""
        return process.terminate(pid, self.stop_timeout)

    def log_since(self, offset: int) -> str:
        try:
            with self.log.open("rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return 0
