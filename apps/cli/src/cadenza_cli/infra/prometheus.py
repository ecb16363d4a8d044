"""Prometheus from the Debian package, scraping every Cadenza service (optional:
``cadenza infra up --with prometheus``). Config: ``infra/prometheus/prometheus.yml``."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from cadenza_cli.infra import process
from cadenza_cli.infra.base import Say, Service
from cadenza_cli.infra.paths import infra_dir

DEFAULT_PORT = 19090
RETENTION = "7d"


def default_config() -> Path:
    return infra_dir() / "prometheus" / "prometheus.yml"


class Prometheus(Service):
    name = "prometheus"
    marker = "prometheus"
    start_timeout = 60.0

    def __init__(
        self, state: Path, cache: Path, *, config: Path | None = None, port: int | None = None
    ) -> None:
        super().__init__(state, cache)
        self.config = config or default_config()
        self._port = port

    @property
    def port(self) -> int:
        if self._port is not None:
            return self._port
        return int(os.environ.get("CADENZA_INFRA_PROMETHEUS_PORT") or DEFAULT_PORT)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def apt_packages(self) -> list[str]:
        return [] if shutil.which("prometheus") else ["prometheus"]

    def command(self) -> list[str]:
        binary = shutil.which("prometheus")
        if binary is None:
            raise process.InfraError(self.name, "prometheus not found (Debian package prometheus)")
        if not self.config.is_file():
            raise process.InfraError(self.name, f"no Prometheus config at {self.config}")
        return [
            binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address={self.address}",
            "--web.enable-lifecycle",  # POST /-/reload after editing the config
        ]

    def start(self, say: Say) -> subprocess.Popen[bytes]:
        self.data.mkdir(parents=True, exist_ok=True)
        say(f"config {self.config}")
        return process.spawn(self.command(), self.log, cwd=self.dir)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False
