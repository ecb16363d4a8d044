"""`cadenza infra tool`: helm and the compose CLI built with Go and cached like MinIO."""

from __future__ import annotations

from pathlib import Path

import pytest
from cadenza_cli.infra import infra_app, tools
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CADENZA_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_tools_are_pinned_and_cached_per_version(cache: Path) -> None:
    helm = tools.TOOLS["helm"]
    assert helm.version.startswith("v4.")
    assert helm.path == cache / "helm" / helm.version / "helm"
    assert tools.TOOLS["compose"].path == cache / "compose" / "v5.6.0" / "docker-compose"


def test_a_cached_binary_is_returned_without_building(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tools.cached("helm") is None
    binary = tools.TOOLS["helm"].path
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    monkeypatch.setattr(tools, "go_bin", lambda: pytest.fail("must not build"))
    assert tools.ensure("helm") == binary
    result = CliRunner().invoke(infra_app, ["tool", "helm"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(binary)


def test_without_go_the_build_fails_with_a_clear_error(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "go_bin", lambda: None)
    with pytest.raises(tools.ToolError, match="go toolchain not found"):
        tools.ensure("compose")
    result = CliRunner().invoke(infra_app, ["tool", "compose"])
    assert result.exit_code == 1
    assert "go toolchain not found" in result.output
    assert CliRunner().invoke(infra_app, ["tool", "kubectl"]).exit_code != 0
