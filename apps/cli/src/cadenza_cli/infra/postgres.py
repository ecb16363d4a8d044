"""PostgreSQL from the Debian packages, run as the ``postgres`` OS user on a project port."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import subprocess
from pathlib import Path

from cadenza_cli.infra import process
from cadenza_cli.infra.base import Say, Service
from cadenza_cli.infra.paths import port

OS_USER = "postgres"  # initdb and postgres refuse to run as root
ROLE = "cadenza"
PASSWORD = "cadenza"
DATABASE = "cadenza"

# Idempotent: safe on every `up`, also re-asserts the password.
SETUP_SQL = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
    CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}';
  ELSE
    ALTER ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}';
  END IF;
END $$;
SELECT 'CREATE DATABASE {DATABASE} OWNER {ROLE}'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec
"""


def pg_bin_dir(root: Path = Path("/usr/lib/postgresql")) -> Path | None:
    """bin/ of the highest installed major version that has the server binaries."""
    versions = []
    for child in root.glob("*/bin"):
        if (
            child.parent.name.isdigit()
            and (child / "postgres").is_file()
            and (child / "initdb").is_file()
        ):
            versions.append((int(child.parent.name), child))
    return max(versions)[1] if versions else None


def dsn(port_: int) -> str:
    return f"postgresql+asyncpg://{ROLE}:{PASSWORD}@127.0.0.1:{port_}/{DATABASE}"


FALLBACK_ROOT = Path("/var/lib/cadenza")


class Postgres(Service):
    name = "postgres"
    marker = "bin/postgres"
    start_timeout = 60.0

    @property
    def port(self) -> int:
        return port("postgres")

    @property
    def home(self) -> Path:
        """Where the postgres OS user keeps its data and socket: inside the state dir when
        other users can traverse its ancestors, else a per-state-dir folder under
        /var/lib/cadenza (CI clones often live in 0700 temp dirs, whose permissions are
        not ours to change)."""
        if all(p.stat().st_mode & 0o001 for p in self.dir.parent.parents):
            return self.dir
        digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]
        return FALLBACK_ROOT / f"postgres-{digest}"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def bin(self) -> Path:
        found = pg_bin_dir()
        if found is None:
            raise process.InfraError(self.name, "no PostgreSQL server under /usr/lib/postgresql")
        return found

    def apt_packages(self) -> list[str]:
        return [] if pg_bin_dir() else ["postgresql"]

    def _prepare_dirs(self) -> None:
        uid, gid = _ids(OS_USER)
        for d in (self.dir, self.home, self.data, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        # The postgres user must be able to traverse down to its data (mktemp dirs are 0700).
        for d in {self.dir.parent, self.dir, self.home.parent, self.home}:
            d.chmod(d.stat().st_mode | 0o711)
        for d in (self.data, self.socket_dir):
            os.chown(d, uid, gid)
        self.data.chmod(0o700)

    def _check_reachable(self) -> None:
        try:
            process.run(
                ["test", "-w", str(self.data)],
                service=self.name,
                what="access check",
                user=OS_USER,
                cwd=Path("/"),
                timeout=30,
            )
        except process.InfraError as e:
            raise process.InfraError(
                self.name,
                f"the {OS_USER} OS user cannot write {self.data}; make the parents of the state "
                "dir traversable (chmod o+x) or set CADENZA_STATE_DIR elsewhere",
                self.log,
            ) from e

    def start(self, say: Say) -> subprocess.Popen[bytes]:
        self._prepare_dirs()
        if not (self.data / "PG_VERSION").is_file():
            say("initdb")
            self._check_reachable()
            process.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    OS_USER,
                    "--encoding=UTF8",
                    "--locale=C",
                    # Superuser via the private unix socket only; TCP clients need a password.
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                service=self.name,
                what="initdb",
                log=self.log,
                user=OS_USER,
                cwd=self.data,
                timeout=300,
            )
        return process.spawn(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                f"listen_addresses={self.host}",
                "-c",
                "max_connections=200",
            ],
            self.log,
            user=OS_USER,
            cwd=self.data,
        )

    def _psql(self, sql: str, *, what: str) -> str:
        return process.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                OS_USER,
                "-d",
                "postgres",
            ],
            service=self.name,
            what=what,
            log=self.log,
            user=OS_USER,
            cwd=self.data,
            env={"PGOPTIONS": "-c client_min_messages=warning"},
            timeout=60,
            input=sql,
        )

    def after_start(self, say: Say) -> None:
        self._psql(SETUP_SQL, what="create role and database")

    def healthy(self) -> bool:
        """A real query over TCP with the application's credentials."""
        try:
            out = subprocess.run(
                [
                    str(self.bin / "psql"),
                    "-X",
                    "-tA",
                    "-c",
                    "select 1",
                    f"postgresql://{ROLE}@{self.host}:{self.port}/{DATABASE}?connect_timeout=3",
                ],
                capture_output=True,
                text=True,
                timeout=10,
                env={**os.environ, "PGPASSWORD": PASSWORD},
            )
        except (OSError, subprocess.TimeoutExpired, process.InfraError):  # not installed / hung
            return False
        return out.returncode == 0 and out.stdout.strip() == "1"

    def ready(self, log_offset: int) -> bool:
        # The role may not exist yet on first start: ask pg_isready, not the app login.
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
            capture_output=True,
            timeout=10,
        )
        return result.returncode == 0

    def stop(self, pid: int) -> bool:
        with contextlib.suppress(process.InfraError):  # fall back to signals
            process.run(
                [
                    str(self.bin / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(int(self.stop_timeout)),
                ],
                service=self.name,
                what="pg_ctl stop",
                log=self.log,
                user=OS_USER,
                cwd=self.data,
                timeout=self.stop_timeout + 10,
            )
        return process.terminate(pid, 5.0) if process.pid_alive(pid) else False


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid
