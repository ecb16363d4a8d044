"""Detectors an operator plugs into the PII checks (``CADENZA_WORKER_PII_DETECTORS``).

Cadenza ships validators only (no model): person names need a named-entity model, which
the deployment has to install with the worker image (nothing is downloaded at run time). A
detector is any function ``(text) -> iterable of (entity, start, end)`` importable as
``package.module:function``; its findings join the built-in ones for every PII policy and
get the policy's action (a redaction writes ``<ENTITY>``, e.g. ``<NAME>``). See
docs/guardrails.md for a spaCy example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence

from .pii import Finding, mask

Detector = Callable[[str], Iterable[tuple[str, int, int]]]

ENTITY_MAX = 32


class DetectorLoadError(ValueError):
    """A configured detector cannot be imported: the worker refuses to start (a check that
    silently did not run would be worse than no worker)."""


def load_detectors(paths: Sequence[str]) -> list[Detector]:
    """Import each ``module:function``; raise naming the path that fails."""
    detectors: list[Detector] = []
    for path in paths:
        module_name, _, attr = path.partition(":")
        if not module_name or not attr:
            raise DetectorLoadError(f"PII detector {path!r}: expected 'package.module:function'")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise DetectorLoadError(f"PII detector {path!r} cannot be loaded: {exc}") from exc
        if not callable(target):
            raise DetectorLoadError(f"PII detector {path!r} is not callable")
        detectors.append(target)
    return detectors


def run_detectors(detectors: Sequence[Detector], text: str) -> list[Finding]:
    """The plugged-in detectors' findings in ``text`` (spans checked, values masked)."""
    found: list[Finding] = []
    for detector in detectors:
        for entity, start, end in detector(text):
            if 0 <= start < end <= len(text) and entity:
                found.append(Finding(str(entity)[:ENTITY_MAX], start, end, mask(text[start:end])))
    return found
