"""The `deploy` suite: the image built for real, the services run as containers.

Needs dockerd (run `dockerd` as root if it is not running) and the host's infra
(`cadenza infra up`); the compose CLI is built from the Go module proxy and cached
(`cadenza_cli.infra.tools`). Run with `make test-deploy`; `make test` leaves it out. As
everywhere, a missing service fails the test under CI=true and skips it elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cadenza_cli.infra import tools
from support import service_missing
from support.cluster import free_port

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("CADENZA_DEPLOY_TEST_IMAGE", "cadenza:dev")
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.host.yml"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/deploy/" in str(item.path):
            item.add_marker(pytest.mark.deploy)


@pytest.fixture(scope="session")
def docker() -> str:
    found = shutil.which("docker")
    if found is None:
        service_missing("docker CLI not found (apt-get install docker.io)")
        raise AssertionError  # unreachable: _missing raised
    probe = subprocess.run([found, "info"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        service_missing(
            f"dockerd not reachable (start it: dockerd &): {probe.stderr.strip()[-300:]}"
        )
    return found


@pytest.fixture(scope="session")
def image(docker: str) -> str:
    """The Cadenza image, built from this checkout on the Debian base (both cached)."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "infra/docker/build-image.sh"), IMAGE],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"image build failed:\n{proc.stderr[-4000:]}"
    print(f"image {IMAGE} built in {time.monotonic() - started:.0f} s: {proc.stderr[-300:]}")
    return IMAGE


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    return tools.ensure("compose")


@dataclass
class ComposeDeployment:
    """One compose project of Cadenza's services on the host's network and infra."""

    compose: Path
    namespace: str
    image: str
    gateway_port: int = field(default_factory=free_port)
    search_port: int = field(default_factory=free_port)
    orchestrator_metrics_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CADENZA_IMAGE": self.image,
            "CADENZA_NAMESPACE": self.namespace,
            "CADENZA_HOST_GATEWAY_PORT": str(self.gateway_port),
            "CADENZA_HOST_SEARCH_PORT": str(self.search_port),
            "CADENZA_HOST_ORCHESTRATOR_METRICS_PORT": str(self.orchestrator_metrics_port),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        files = [arg for name in COMPOSE_FILES for arg in ("-f", str(REPO / name))]
        proc = subprocess.run(
            [str(self.compose), "-p", self.namespace, *files, *args],
            capture_output=True, text=True, env=self.env, cwd=REPO, timeout=timeout,
            check=False,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{output[-4000:]}")
        return output

    def container_ids(self) -> list[str]:
        return self.run("ps", "-a", "-q").split()


@pytest.fixture
def deployment(
    image: str, compose_bin: Path, unique_id: str, require_services: Callable[..., None]
) -> Iterator[ComposeDeployment]:
    require_services("kafka", "postgres", "redis", "minio")
    deployment = ComposeDeployment(compose=compose_bin, namespace=unique_id, image=image)
    try:
        yield deployment
    finally:
        print(deployment.run("logs", "--no-color", "--tail", "40", check=False)[-8000:])
        deployment.run("down", "--volumes", "--remove-orphans", "--timeout", "60", check=False)
