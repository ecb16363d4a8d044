"""What a fresh interpreter loads: a service must not pay at its start for libraries it
only needs on some paths (fakeredis, qdrant-client, LangGraph cost 0.25 to 0.7 s of CPU
each)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Collection


def loaded_after(code: str, packages: Collection[str]) -> set[str]:
    """Which of ``packages`` (top-level names) are loaded once ``code`` has run in a fresh
    interpreter."""
    probe = (
        f"{code}\n"
        "import json, sys\n"
        f"wanted = set({sorted(packages)!r})\n"
        "print(json.dumps(sorted(wanted & {m.split('.')[0] for m in sys.modules})))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))
