"""Redis from the Debian package, on a project port with data under the state dir."""

from __future__ import annotations

import shutil
import subprocess

from cadenza_cli.infra import process
from cadenza_cli.infra.base import Say, Service
from cadenza_cli.infra.paths import port


class Redis(Service):
    name = "redis"
    marker = "redis-server"
    start_timeout = 30.0

    @property
    def port(self) -> int:
        return port("redis")

    def apt_packages(self) -> list[str]:
        return (
            [] if shutil.which("redis-server") and shutil.which("redis-cli") else ["redis-server"]
        )

    def command(self) -> list[str]:
        server = shutil.which("redis-server")
        if server is None:
            raise process.InfraError(self.name, "redis-server not found")
        return [
            server,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.data),
            "--appendonly", "yes",
            "--daemonize", "no",
            # Log to stdout, which spawn() sends to the service log file.
            "--logfile", "",
        ]  # fmt: skip

    def start(self, say: Say) -> subprocess.Popen[bytes]:
        self.data.mkdir(parents=True, exist_ok=True)
        return process.spawn(self.command(), self.log, cwd=self.data)

    def healthy(self) -> bool:
        cli = shutil.which("redis-cli")
        if cli is None:
            return False
        try:
            out = subprocess.run(
                [cli, "-h", self.host, "-p", str(self.port), "ping"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.stdout.strip() == "PONG"
