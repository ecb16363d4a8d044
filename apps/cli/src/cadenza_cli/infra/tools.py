"""Deployment tools built from the Go module proxy and cached like MinIO: helm (for the
chart's checks) and the docker compose CLI (for the compose test).

``ensure(name)`` returns the cached binary, building it on first use into
``$CADENZA_CACHE_DIR/<name>/<version>/`` (a scratch folder, renamed when complete, so a
half-written binary is never reused). ``cadenza infra tool helm|compose`` prints the path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cadenza_cli.infra.minio import go_bin
from cadenza_cli.infra.paths import cache_dir


class ToolError(RuntimeError):
    """A tool could not be built (names the tool and the failing step)."""


@dataclass(frozen=True)
class GoTool:
    name: str  # cache folder and command name
    module: str  # the module whose version is pinned
    package: str  # the main package inside it
    version: str
    binary: str  # file name of the built binary
    ldflags: str = "-s -w"

    @property
    def path(self) -> Path:
        return cache_dir() / self.name / self.version / self.binary


TOOLS = {
    "helm": GoTool(
        name="helm",
        module="helm.sh/helm/v4",
        package="helm.sh/helm/v4/cmd/helm",
        version="v4.3.2",
        binary="helm",
        ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=v4.3.2",
    ),
    "compose": GoTool(
        name="compose",
        module="github.com/docker/compose/v5",
        package="github.com/docker/compose/v5/cmd",
        version="v5.6.0",
        binary="docker-compose",
        ldflags="-s -w -X github.com/docker/compose/v5/internal.Version=v5.6.0",
    ),
}


def cached(name: str) -> Path | None:
    """The tool's cached binary, or None if it was never built."""
    path = TOOLS[name].path
    return path if os.access(path, os.X_OK) else None


def ensure(name: str, *, timeout: float = 3600) -> Path:
    """The tool's binary, built with the Go toolchain first if it is not cached (a cold Go
    build takes minutes; afterwards this returns at once)."""
    tool = TOOLS[name]
    if found := cached(name):
        return found
    go = go_bin()
    if go is None:
        raise ToolError(f"{name}: go toolchain not found (PATH or /usr/local/go)")
    scratch = tool.path.parent / "build.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log = tool.path.parent / "build.log"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    with tempfile.TemporaryDirectory(prefix=f"cadenza-{name}-") as work:
        out = str(scratch / tool.binary)
        # Built from a scratch module that requires the pinned version, not `go install
        # pkg@version`: that refuses modules whose go.mod has exclude/replace (compose).
        steps = [
            [go, "mod", "init", f"cadenza.build/{name}"],
            [go, "get", f"{tool.package}@{tool.version}"],
            [go, "build", "-trimpath", "-ldflags", tool.ldflags, "-o", out, tool.package],
        ]
        with log.open("w") as handle:
            for step in steps:
                handle.write(f"$ {' '.join(step)}\n")
                handle.flush()
                proc = subprocess.run(
                    step, cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, timeout=timeout, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                    raise ToolError(f"{name}: `{' '.join(step[:3])}` failed ({log}):\n{tail}")
    (scratch / tool.binary).replace(tool.path)
    shutil.rmtree(scratch, ignore_errors=True)
    return tool.path
