"""Every file the Dockerfile copies is in the build context `.dockerignore` leaves.

The image is built only by `make test-deploy` (it needs dockerd), so a context that drops
a copied path fails nowhere else: moving the `cadenza` command to `apps/cli` once broke the
build that way (`COPY apps/cli/pyproject.toml`: "file not found in build context"). This
reads both files with Docker's rules and checks it in `make test`.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
# What the build never needs and the ignore file leaves out on purpose.
INTENDED = re.compile(r"(^|/)(__pycache__|\.pytest_cache|\.mypy_cache)(/|$)|\.pyc$")


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """``.dockerignore`` lines as (re-included?, regex), in order: ``*`` and ``?`` stay in
    one path segment, ``**`` crosses them (Docker's patternmatcher)."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = line.lstrip("!").strip("/")
        parts = re.split(r"(\*\*/?|\*|\?)", body)
        regex = "".join(
            ".*"
            if p.startswith("**")
            else "[^/]*"
            if p == "*"
            else "[^/]"
            if p == "?"
            else re.escape(p)
            for p in parts
        )
        patterns.append((negated, re.compile(f"^{regex}$")))
    return patterns


def excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern that matches it or
    one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    out = False
    for negated, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            out = not negated
    return out


def copied_sources(dockerfile: str) -> list[str]:
    """The build-context paths of every ``COPY`` (not ``COPY --from``: another stage)."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    sources = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() != "COPY":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += [a.rstrip("/") for a in args[:-1]]
    return sources


@cache
def patterns() -> list[tuple[bool, re.Pattern[str]]]:
    return ignore_patterns((ROOT / ".dockerignore").read_text())


def test_every_copied_file_is_in_the_build_context() -> None:
    sources = copied_sources((ROOT / "Dockerfile").read_text())
    assert "apps/cli/pyproject.toml" in sources  # the parse found them
    assert "libs" in sources
    missing = []
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if not INTENDED.search(relative) and excluded(relative, patterns()):
                missing.append(relative)
    assert not missing, f".dockerignore leaves out what the Dockerfile copies: {missing[:10]}"


def test_the_matcher_reads_the_ignore_file_as_docker_does() -> None:
    rules = ignore_patterns("*\n!libs/\n**/__pycache__\n!keep.txt\n")
    assert excluded("apps/cli/pyproject.toml", rules)  # `*` leaves out every top level
    assert not excluded("libs/state/pyproject.toml", rules)  # re-included with its contents
    assert excluded("libs/state/src/__pycache__/x.pyc", rules)  # `**` at any depth
    assert not excluded("keep.txt", rules)
    assert excluded("keep.txt.bak", rules)  # a pattern matches whole names only
