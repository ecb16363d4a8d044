"""Run Cadenza's services as separate OS processes against the real infrastructure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """kill -9: no graceful shutdown, no final commits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Cluster:
    """One isolated deployment: its own topics, schema, Redis prefix and bucket."""

    namespace: str
    log_dir: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    processes: list[ServiceProcess] = field(default_factory=list)
    gateway_port: int = field(default_factory=free_port)
    search_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "CADENZA_BUS_BACKEND": "kafka",
                "CADENZA_BUS_TOPIC_PREFIX": f"{self.namespace}.",
                "CADENZA_BUS_PARTITIONS": "3",
                "CADENZA_BUS_SESSION_TIMEOUT_MS": "6000",
                "CADENZA_DATABASE_SCHEMA": self.namespace,
                "CADENZA_REDIS_KEY_PREFIX": f"{self.namespace}:",
                "CADENZA_S3_BUCKET": self.namespace.replace("_", "-"),
                "CADENZA_GATEWAY_PORT": str(self.gateway_port),
                # Dev-mode auth (the gateway listens on loopback): the suites' clients send
                # no credential; tests/gateway covers keys, tokens and scopes.
                "CADENZA_GATEWAY_AUTH_ANONYMOUS_ACCESS": "true",
                "CADENZA_ORCHESTRATOR_METRICS_PORT": "0",
                "CADENZA_ORCHESTRATOR_SWEEP_INTERVAL_S": "0.5",
                "CADENZA_ORCHESTRATOR_SWEEP_MIN_AGE_S": "1",
                "CADENZA_WORKER_METRICS_PORT": "0",
                "CADENZA_WORKER_LEASE_TTL_S": "3",
                # Qdrant's local mode is one process's: rag-ingest owns it and serves
                # searches to the gateway and workers.
                "CADENZA_RETRIEVAL_QDRANT_PATH": str(self.log_dir / "qdrant"),
                "CADENZA_RETRIEVAL_SEARCH_URL": self.search_url,
                "CADENZA_RAG_SEARCH_PORT": str(self.search_port),
                "CADENZA_RAG_METRICS_PORT": "0",
                "CADENZA_TRIGGER_METRICS_PORT": "0",
                "CADENZA_TRIGGER_RELOAD_INTERVAL_S": "0.5",
                "CADENZA_TRIGGER_SCHEDULE_POLL_S": "0.2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env_overrides)
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def search_url(self) -> str:
        return f"http://127.0.0.1:{self.search_port}"

    def start(
        self, name: str, module: str, extra_env: dict[str, str] | None = None
    ) -> ServiceProcess:
        """``extra_env``: settings for this one process (e.g. its own metrics port)."""
        log = self.log_dir / f"{name}-{len(self.processes)}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**self.env, **(extra_env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service = ServiceProcess(name, proc, log)
        self.processes.append(service)
        return service

    def start_gateway(self) -> ServiceProcess:
        return self._wait_ready(self.start("gateway", "cadenza_gateway"), f"{self.url}/readyz")

    def start_rag_ingest(self) -> ServiceProcess:
        """rag-ingest with its search API (ready once it answers /healthz)."""
        service = self.start("rag-ingest", "cadenza_rag")
        return self._wait_ready(service, f"{self.search_url}/healthz")

    @staticmethod
    def _wait_ready(service: ServiceProcess, url: str) -> ServiceProcess:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if service.proc.poll() is not None:
                raise RuntimeError(f"{service.name} exited:\n{service.tail()}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return service
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{service.name} never became ready:\n{service.tail()}")

    def start_orchestrator(self, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        return self.start("orchestrator", "cadenza_orchestrator", extra_env)

    def start_worker(self, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        return self.start("worker", "cadenza_worker", extra_env)

    def start_trigger(self, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        """The trigger service (upstream-topic consumer + scheduler)."""
        return self.start("trigger", "cadenza_trigger", extra_env)

    def logs(self) -> str:
        return "\n\n".join(f"== {p.name} ({p.log.name})\n{p.tail()}" for p in self.processes)

    def stop(self) -> None:
        for service in reversed(self.processes):
            service.stop()
