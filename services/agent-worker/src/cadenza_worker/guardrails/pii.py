"""Offline PII detection: candidates found by pattern, then confirmed by well-kept
validators — `phonenumbers` (Google's libphonenumber) for phone numbers, `python-stdnum`
for card numbers (Luhn), IBANs (ISO 13616 mod-97) and national ids (their check digits).
Nothing is downloaded at run time. A confirmed match is a `Finding`; its value is never
stored or logged in the clear, only a masked preview."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from stdnum import iban, luhn
from stdnum.es import dni
from stdnum.fr import nir
from stdnum.gb import nhs
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# Shapes of national ids whose check digits python-stdnum verifies (an SSN has none: its
# validator rejects impossible areas/groups, and the dashed shape is required).
_NATIONAL = re.compile(
    r"\b(?:\d{3}-\d{2}-\d{4}|\d{8}[A-Z]|[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]"
    r"|[12]\d{12}(?: ?\d{2})?|\d{3} ?\d{3} ?\d{4}|\d{9})\b"
)
_NATIONAL_VALIDATORS = (ssn, dni, codicefiscale, nir, nhs, bsn)


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    preview: str  # masked: first and last characters only

    def as_dict(self) -> dict[str, object]:
        return {"entity": self.entity, "start": self.start, "end": self.end, "value": self.preview}


def mask(value: str) -> str:
    """'alice@example.com' → 'a…m (17 chars)': enough for an operator to recognise a
    finding, not enough to leak it."""
    value = value.strip()
    if len(value) <= 4:
        return "…" + f" ({len(value)} chars)"
    return f"{value[0]}…{value[-1]} ({len(value)} chars)"


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _emails(text: str) -> Iterable[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding("email", m.start(), m.end(), mask(m.group()))


def _cards(text: str) -> Iterable[Finding]:
    for m in _CARD.finditer(text):
        number = _digits(m.group())
        if 13 <= len(number) <= 19 and luhn.is_valid(number) and len(set(number)) > 1:
            yield Finding("credit_card", m.start(), m.end(), mask(number))


def _ibans(text: str) -> Iterable[Finding]:
    for m in _IBAN.finditer(text):
        if iban.is_valid(m.group()):
            yield Finding("iban", m.start(), m.end(), mask(m.group().replace(" ", "")))


def _national_ids(text: str) -> Iterable[Finding]:
    for m in _NATIONAL.finditer(text):
        value = m.group()
        if any(v.is_valid(value) for v in _NATIONAL_VALIDATORS):
            yield Finding("national_id", m.start(), m.end(), mask(value))


def _phones(text: str, regions: Sequence[str]) -> Iterable[Finding]:
    seen: set[tuple[int, int]] = set()
    for region in regions or ["US"]:
        for match in phonenumbers.PhoneNumberMatcher(
            text, region, leniency=phonenumbers.Leniency.VALID
        ):
            span = (match.start, match.end)
            if span not in seen:
                seen.add(span)
                yield Finding("phone", match.start, match.end, mask(match.raw_string))


def detect(
    text: str,
    entities: Sequence[str],
    phone_regions: Sequence[str] = (),
    extra: Iterable[Finding] = (),
) -> list[Finding]:
    """Every confirmed finding of ``entities`` in ``text``; where two overlap (a card number
    that also looks like a phone number) the earlier-listed, stricter check wins. ``extra``
    are plugged-in detectors' findings (names…): they come last, so a validated finding
    wins an overlap."""
    found: list[Finding] = []
    # Order matters for overlaps: checksum-verified kinds before phone numbers.
    if "email" in entities:
        found += _emails(text)
    if "credit_card" in entities:
        found += _cards(text)
    if "iban" in entities:
        found += _ibans(text)
    if "national_id" in entities:
        found += _national_ids(text)
    if "phone" in entities:
        found += _phones(text, phone_regions)
    found += extra
    kept: list[Finding] = []
    for f in found:
        if not any(f.start < k.end and k.start < f.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: Sequence[Finding]) -> str:
    """``text`` with every finding replaced by ``<ENTITY>``."""
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        out += [text[last : f.start], f"<{f.entity.upper()}>"]
        last = f.end
    out.append(text[last:])
    return "".join(out)
