"""Apache Kafka: jars from Maven Central, single-node KRaft on the local JDK."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path
from string import Template

from cadenza_cli.infra import process
from cadenza_cli.infra.base import Say, Service
from cadenza_cli.infra.kafka_probe import group_coordinator_ready
from cadenza_cli.infra.paths import HOST, infra_dir, port

# Keep in sync with <kafka.version> in infra/kafka/pom.xml.
KAFKA_VERSION = "4.1.2"
HEAP = ["-Xms256m", "-Xmx768m"]
STARTED_LINE = "Kafka Server started"


def java_bin() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def random_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``: url-safe base64, no padding, no leading '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def render_server_properties(
    template: str, *, host: str, port: int, controller_port: int, data_dir: Path
) -> str:
    return Template(template).substitute(
        host=host, port=port, controller_port=controller_port, data_dir=data_dir
    )


class Kafka(Service):
    name = "kafka"
    marker = "kafka.Kafka"
    start_timeout = 120.0

    @property
    def port(self) -> int:
        return port("kafka")

    @property
    def controller_port(self) -> int:
        return port("kafka_controller")

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    @property
    def libs(self) -> Path:
        return self.cache / "kafka" / KAFKA_VERSION / "libs"

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.dir / "log4j2.yaml"

    @property
    def pom(self) -> Path:
        return infra_dir() / "kafka" / "pom.xml"

    @property
    def stamp(self) -> Path:
        # Hash of the pom the libs came from: editing the pom re-resolves even at the same version.
        return self.libs.with_name("pom.sha256")

    def installed(self) -> bool:
        pom_hash = hashlib.sha256(self.pom.read_bytes()).hexdigest()
        try:
            return self.libs.is_dir() and self.stamp.read_text().strip() == pom_hash
        except OSError:
            return False

    def apt_packages(self) -> list[str]:
        pkgs = [] if java_bin() else ["openjdk-17-jre-headless"]
        if not self.installed() and not shutil.which("mvn"):
            pkgs.append("maven")
        return pkgs

    def install(self, say: Say) -> None:
        if self.installed():
            return
        say(f"resolving Kafka {KAFKA_VERSION} jars with maven")
        # Copy into a sibling then rename, so an interrupted download never looks complete.
        tmp = self.libs.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        process.run(
            [
                "mvn",
                "-q",
                "-B",
                "--no-transfer-progress",
                "-f",
                str(self.pom),
                f"-Dmaven.repo.local={self.cache / 'm2'}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
            ],
            service=self.name,
            what="maven dependency resolution",
            log=self.log,
            timeout=1800,
        )
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.replace(self.libs)
        self.stamp.write_text(hashlib.sha256(self.pom.read_bytes()).hexdigest() + "\n")

    def _java(self, main: str, *args: str, heap: list[str]) -> list[str]:
        java = java_bin()
        if java is None:
            raise process.InfraError(
                self.name, "java not found (need JDK 17+ on PATH or JAVA_HOME)"
            )
        return [
            java,
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        template = (infra_dir() / "kafka" / "server.properties").read_text()
        self.config.write_text(
            render_server_properties(
                template,
                host=HOST,
                port=self.port,
                controller_port=self.controller_port,
                data_dir=self.data,
            )
        )
        shutil.copyfile(infra_dir() / "kafka" / "log4j2.yaml", self.log4j_config)

    def start(self, say: Say) -> subprocess.Popen[bytes]:
        self.write_config()
        if not (self.data / "meta.properties").is_file():
            say("formatting KRaft storage")
            self.data.mkdir(parents=True, exist_ok=True)
            process.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--ignore-formatted",
                    "-t",
                    random_cluster_id(),
                    "-c",
                    str(self.config),
                    heap=["-Xmx256m"],
                ),
                service=self.name,
                what="storage format",
                log=self.log,
                timeout=120,
            )
        return process.spawn(self._java("kafka.Kafka", str(self.config), heap=HEAP), self.log)

    def ready(self, log_offset: int) -> bool:
        return STARTED_LINE in self.log_since(log_offset) and self.healthy()

    def healthy(self) -> bool:
        try:
            return group_coordinator_ready(self.host, self.port)
        except (OSError, ValueError, struct.error):
            return False
