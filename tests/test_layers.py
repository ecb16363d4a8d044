"""The workspace's layering: `libs/` never imports a service (`services/`) or an app
(`apps/`); a service never imports an app or another service (they talk over Kafka). Only `apps/cli`, the composition root that runs
every service in one process (`cadenza dev`), may import them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def packages(layer: str) -> set[str]:
    """The top-level Python packages under ``<layer>/*/src``."""
    return {p.name for p in ROOT.glob(f"{layer}/*/src/*") if (p / "__init__.py").is_file()}


def imported(path: Path) -> set[str]:
    """The top-level modules ``path`` imports (absolute imports, anywhere in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def offenders(layer: str, forbidden: set[str]) -> list[str]:
    """``layer``'s modules that import one of ``forbidden`` (``layer``: ``libs``, or
    ``services/<name>`` for one service)."""
    sources = f"{layer}/src/**/*.py" if "/" in layer else f"{layer}/*/src/**/*.py"
    return sorted(
        f"{path.relative_to(ROOT)} imports {', '.join(sorted(hit))}"
        for path in ROOT.glob(sources)
        if (hit := imported(path) & forbidden)
    )


def test_the_layers_are_found() -> None:
    # A layer found empty would make the checks below pass for nothing.
    assert {"cadenza_events", "cadenza_state", "cadenza_runtime"} <= packages("libs")
    assert {"cadenza_gateway", "cadenza_orchestrator", "cadenza_worker"} <= packages("services")
    assert packages("apps") == {"cadenza_cli"}


def test_libs_import_no_service_and_no_app() -> None:
    assert offenders("libs", packages("services") | packages("apps")) == []


def test_services_import_no_app_and_no_other_service() -> None:
    assert offenders("services", packages("apps")) == []
    for service in sorted(ROOT.glob("services/*/src/*/__init__.py")):
        others = packages("services") - {service.parent.name}
        assert offenders(f"services/{service.parents[2].name}", others) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from cadenza_worker.tools import x\n    import cadenza_gateway\n"
    )
    assert imported(module) == {"cadenza_worker", "cadenza_gateway"}
