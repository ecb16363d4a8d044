"""A stand-in for an operator's named-entity detector (docs/guardrails.md: names): it finds
the people of a fixed list, as a spaCy ``PERSON`` adapter would find any."""

from __future__ import annotations

import re
from collections.abc import Iterator

PEOPLE = re.compile(r"\b(?:Alice Johnson|Robert Smith)\b")


def names(text: str) -> Iterator[tuple[str, int, int]]:
    for m in PEOPLE.finditer(text):
        yield "name", m.start(), m.end()


NOT_CALLABLE = 42
