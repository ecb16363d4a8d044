"""A private PostgreSQL, Redis, Kafka or MinIO that a fault drill may stop and start.

The shared services (``cadenza infra up`` from the main checkout) serve other test runs at
the same time and must never be restarted. A ``PrivateService`` is the same code path —
``cadenza infra up|down --only NAME`` — with its own ``CADENZA_STATE_DIR`` (data, pid
files, logs) and its own free ports (``CADENZA_INFRA_<NAME>_PORT``); downloads still come
from the shared cache. ``overrides()`` is the environment that points a ``Cluster`` at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.cluster import free_port

# The ports each service binds (paths.DEFAULT_PORTS keys).
PORT_NAMES: dict[str, tuple[str, ...]] = {
    "postgres": ("postgres",),
    "redis": ("redis",),
    "kafka": ("kafka", "kafka_controller"),
    "minio": ("minio", "minio_console"),
}


_INFRA_CLI = "from cadenza_cli.infra.cli import infra_app; infra_app(prog_name='cadenza infra')"
# The same, imported ahead and held until a line arrives on stdin: a drill's stop then
# happens the moment it decides, not seconds later (the imports are slow on a busy machine).
_PREPARED_CLI = (
    "import sys\n"
    "from cadenza_cli.infra.cli import infra_app\n"
    "sys.stdin.readline()\n"
    "infra_app(prog_name='cadenza infra')"
)


class InfraUnavailable(RuntimeError):
    """`cadenza infra up|down` failed (binaries missing, port taken, …)."""


@dataclass
class PrivateService:
    name: str
    state_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    """What each up/down said, with how long it took (for failure messages)."""

    @classmethod
    def create(cls, name: str) -> PrivateService:
        # Directly under /tmp, not pytest's 0700 tmp dir: PostgreSQL runs as its own OS user
        # and keeps its data inside the state dir only when it can traverse the parents.
        state = Path(tempfile.mkdtemp(prefix=f"cadenza-faults-{name}-", dir="/tmp"))
        return cls(name, state, {p: free_port() for p in PORT_NAMES[name]})

    @property
    def port(self) -> int:
        return self.ports[self.name]

    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CADENZA_STATE_DIR"] = str(self.state_dir)
        for name, value in self.ports.items():
            env[f"CADENZA_INFRA_{name.upper()}_PORT"] = str(value)
        return env

    def overrides(self) -> dict[str, str]:
        """Environment of the services (and test clients) that should use this instance."""
        if self.name == "postgres":
            url = f"postgresql+asyncpg://cadenza:cadenza@127.0.0.1:{self.port}/cadenza"
            return {"CADENZA_DATABASE_URL": url}
        if self.name == "redis":
            return {"CADENZA_REDIS_URL": f"redis://127.0.0.1:{self.port}/0"}
        if self.name == "minio":
            return {"CADENZA_S3_ENDPOINT": f"127.0.0.1:{self.port}"}
        return {"CADENZA_BUS_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.port}"}

    def _cli(self, *args: str, timeout: float = 180) -> float:
        started = time.monotonic()
        # `cadenza infra ARGS` without the rest of the CLI (whose imports take seconds).
        proc = subprocess.run(
            [sys.executable, "-c", _INFRA_CLI, *args, "--only", self.name],
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        took = time.monotonic() - started
        self.log.append(f"infra {' '.join(args)} ({took:.1f}s, exit {proc.returncode})")
        if proc.returncode != 0:
            raise InfraUnavailable(
                f"`cadenza infra {' '.join(args)} --only {self.name}` failed "
                f"(state {self.state_dir}):\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}"
            )
        return took

    def prepare_down(self) -> PreparedCommand:
        """``infra down`` with its imports done; ``run()`` stops the service at once."""
        proc = subprocess.Popen(
            [sys.executable, "-c", _PREPARED_CLI, "down", "--only", self.name],
            env=self.cli_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return PreparedCommand(self, proc)

    def up(self) -> float:
        """Start it (installing/initialising on first use) and wait until healthy."""
        return self._cli("up")

    def down(self) -> float:
        """Stop exactly its process (by pid file); data stays for the next ``up``."""
        return self._cli("down")

    def remove(self) -> None:
        """Stop it and delete its data, logs and state dir."""
        try:
            self._cli("down", "--purge")
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)


@dataclass
class PreparedCommand:
    service: PrivateService
    proc: subprocess.Popen[str]

    def run(self, timeout: float = 120) -> float:
        started = time.monotonic()
        output, _ = self.proc.communicate("go\n", timeout=timeout)
        took = time.monotonic() - started
        self.service.log.append(f"infra down, prepared ({took:.1f}s, exit {self.proc.returncode})")
        if self.proc.returncode != 0:
            raise InfraUnavailable(f"`cadenza infra down --only {self.service.name}`:\n{output}")
        return took

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
