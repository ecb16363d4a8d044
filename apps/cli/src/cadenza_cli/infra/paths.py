"""Where infra keeps its state (data, logs, pids) and its downloads (cache), and its ports."""

from __future__ import annotations

import os
from pathlib import Path

HOST = "127.0.0.1"

DEFAULT_PORTS: dict[str, int] = {
    "kafka": 19092,
    "kafka_controller": 19093,
    "postgres": 15432,
    "redis": 16379,
    "minio": 19000,
    "minio_console": 19001,
}


def repo_root() -> Path:
    """The directory holding ``uv.lock``: found from this file first (editable install), then cwd."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "uv.lock").is_file():
                return candidate
    raise RuntimeError("cannot find the repository root (a directory containing uv.lock)")


def state_dir() -> Path:
    """Data, logs and pid files; per checkout so two clones don't share a database."""
    env = os.environ.get("CADENZA_STATE_DIR")
    return Path(env).resolve() if env else repo_root() / ".cadenza"


def cache_dir() -> Path:
    """Downloads and builds; outside the checkout so fresh clones reuse them."""
    env = os.environ.get("CADENZA_CACHE_DIR")
    return Path(env).resolve() if env else Path.home() / ".cache" / "cadenza"


def infra_dir() -> Path:
    """Checked-in build files and config templates."""
    return repo_root() / "infra"


def port(name: str) -> int:
    """Port for ``name`` (a DEFAULT_PORTS key); env ``CADENZA_INFRA_<NAME>_PORT`` overrides."""
    value = os.environ.get(f"CADENZA_INFRA_{name.upper()}_PORT")
    return int(value) if value else DEFAULT_PORTS[name]
