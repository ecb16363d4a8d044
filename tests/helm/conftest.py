"""Fixtures of the chart checks: helm (built once and cached) and a renderer."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cadenza_cli.infra import tools

CHART = Path(__file__).resolve().parents[2] / "helm" / "cadenza"
Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> Path:
    return tools.ensure("helm")


def helm_run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    def render(*args: str) -> list[dict[str, Any]]:
        proc = helm_run(helm, "template", "rel", str(CHART), "--namespace", "cadenza", *args)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return render
