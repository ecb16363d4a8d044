"""Container health check for every Cadenza service (the image's HEALTHCHECK).

Finds which service the container runs from its command line (`cadenza <service>` or
`python -m <package>`; CADENZA_SERVICE overrides) and probes it over loopback:
gateway GET /readyz (database, Redis and Kafka reachable), rag-ingest GET /healthz of its
search API, orchestrator and worker GET /healthz of their metrics port (the process is up
and serving; no token needed). Ports come
from the same environment variables the services read. Exit 0 = healthy, 1 = not.
Standard library only, and http.client so no HTTP proxy variable can reroute the probe.
"""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path

# service -> (port variable, default port, path)
PROBES = {
    "gateway": ("CADENZA_GATEWAY_PORT", 8080, "/readyz"),
    "orchestrator": ("CADENZA_ORCHESTRATOR_METRICS_PORT", 9101, "/healthz"),
    "worker": ("CADENZA_WORKER_METRICS_PORT", 9102, "/healthz"),
    "rag-ingest": ("CADENZA_RAG_SEARCH_PORT", 9113, "/healthz"),
}
MODULES = {
    "cadenza_gateway": "gateway",
    "cadenza_orchestrator": "orchestrator",
    "cadenza_worker": "worker",
    "cadenza_rag": "rag-ingest",
}


def service_of(argv: list[str]) -> str | None:
    for arg in argv:
        if arg in PROBES:
            return arg
        if arg in MODULES:
            return MODULES[arg]
    return None


def running_service() -> str | None:
    if name := os.environ.get("CADENZA_SERVICE"):
        return name
    pids = ["1", *sorted(p.name for p in Path("/proc").iterdir() if p.name.isdigit())]
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if name := service_of(argv.split("\0")):
            return name
    return None


def main() -> int:
    name = running_service()
    if name not in PROBES:
        print(f"healthcheck: no probe for service {name!r}")
        return 0 if name is None else 1  # a one-off command (e.g. migrate) has no probe
    variable, default, path = PROBES[name]
    port = int(os.environ.get(variable) or default)
    if port == 0:
        print(f"healthcheck: {variable}=0, nothing to probe")
        return 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
    try:
        conn.request("GET", path)
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"healthcheck: {name} {path} on :{port}: {exc}")
        return 1
    finally:
        conn.close()
    print(f"healthcheck: {name} {path} on :{port}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
