"""MinIO built from a pinned pseudo-version through the Go module proxy."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
from pathlib import Path

from cadenza_cli.infra import process
from cadenza_cli.infra.base import Say, Service
from cadenza_cli.infra.paths import port

MODULE = "github.com/minio/minio"
# Release tags are not on the module proxy; this pseudo-version is.
VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
ROOT_USER = "cadenza"
ROOT_PASSWORD = "cadenza-secret"


def go_bin() -> str | None:
    return shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").is_file() else None
    )


class Minio(Service):
    name = "minio"
    marker = "minio server"
    start_timeout = 60.0

    @property
    def port(self) -> int:
        return port("minio")

    @property
    def console_port(self) -> int:
        return port("minio_console")

    def ports(self) -> list[int]:
        return [self.port, self.console_port]

    @property
    def binary(self) -> Path:
        return self.cache / "minio" / VERSION / "minio"

    def install(self, say: Say) -> None:
        if os.access(self.binary, os.X_OK):
            return
        go = go_bin()
        if go is None:
            raise process.InfraError(self.name, "go toolchain not found (PATH or /usr/local/go)")
        say(f"building minio {VERSION} with go install (slow on a cold Go cache)")
        # Build into a scratch GOBIN and rename, so a half-written binary is never reused.
        scratch = self.binary.parent / "build.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        process.run(
            [go, "install", f"{MODULE}@{VERSION}"],
            service=self.name,
            what="go install",
            log=self.log,
            env={"GOBIN": str(scratch), "GOFLAGS": "-mod=mod"},
            timeout=3600,
        )
        (scratch / "minio").replace(self.binary)
        shutil.rmtree(scratch, ignore_errors=True)

    def start(self, say: Say) -> subprocess.Popen[bytes]:
        self.data.mkdir(parents=True, exist_ok=True)
        return process.spawn(
            [
                str(self.binary), "server", str(self.data),
                "--address", f"{self.host}:{self.port}",
                "--console-address", f"{self.host}:{self.console_port}",
            ],
            self.log,
            env={
                "MINIO_ROOT_USER": ROOT_USER,
                "MINIO_ROOT_PASSWORD": ROOT_PASSWORD,
                "MINIO_UPDATE": "off",  # never reach out at run time
                "MINIO_BROWSER": "on",
            },
            cwd=self.dir,
        )  # fmt: skip

    def healthy(self) -> bool:
        # http.client, not urllib: never route a loopback probe through an HTTP proxy.
        conn = http.client.HTTPConnection(self.host, self.port, timeout=3)
        try:
            conn.request("GET", "/minio/health/live")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
