"""The `cadenza` command line in a process of its own, as a user types it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    inherit_cadenza: bool = True,
    timeout: float = 120,
) -> tuple[int, str, str]:
    """``python -m cadenza_cli ARGS`` from the repository root: (exit code, stdout, stderr).
    ``env`` is added to this process's environment; ``inherit_cadenza=False`` leaves out
    every ``CADENZA_*`` variable of it first (the command sees only what ``env`` says)."""
    base = {k: v for k, v in os.environ.items() if inherit_cadenza or not k.startswith("CADENZA_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cadenza_cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**base, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()
