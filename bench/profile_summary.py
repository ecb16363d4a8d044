"""Read py-spy's ``raw`` (collapsed stacks) output and say where a process spent its time.

    uv run python bench/profile_summary.py FILE [FILE …] [--top N]

``bench/dispatch.py --profile DIR`` records one such file per service process during the
offered load and writes this summary next to them (``summary.txt``). Self time is the
frame a sample was in; inclusive time any frame of its stack. Cython and C code (asyncpg's
protocol, uvloop, the socket calls under it) has no Python frame of its own: its time shows
as the self time of the Python frame that called it (``Connection._do_execute``,
``Runner.run`` for the event loop itself).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"(?P<function>.*) \((?P<path>.*?):\d+\)$")


def frame_name(frame: str) -> str:
    """``function (module path)``, the path cut to what follows site-packages or src."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match["path"]
    for marker in ("site-packages/", "/src/", "python3.11/"):
        path = path.split(marker)[-1]
    return f"{match['function']} ({path})"


@dataclass
class Profile:
    """Samples of one process: how many, and per frame its self and inclusive counts."""

    samples: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, path: Path) -> Profile:
        profile = cls()
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [frame_name(f) for f in stack.split(";")]
            profile.samples += n
            profile.self_time[frames[-1]] += n
            for name in set(frames):  # a recursive frame counts once per sample
                profile.inclusive[name] += n
        return profile

    def report(self, title: str, top: int) -> str:
        if not self.samples:
            return f"{title}: no samples\n"
        lines = [f"{title}: {self.samples} samples", "  self:"]
        lines += [
            f"    {n / self.samples:6.1%}  {name}" for name, n in self.self_time.most_common(top)
        ]
        lines.append("  inclusive (Cadenza's own frames):")
        own = [(k, v) for k, v in self.inclusive.most_common() if "cadenza" in k]
        lines += [f"    {n / self.samples:6.1%}  {name}" for name, n in own[:top]]
        return "\n".join(lines) + "\n"


def summarize(paths: list[Path], top: int = 15) -> str:
    return "\n".join(Profile.read(path).report(path.stem, top) for path in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarize(args.files, args.top))


if __name__ == "__main__":
    main()
