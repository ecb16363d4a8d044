"""Documents to text sections (with page and heading): txt, md, html, json, pdf.

Every failure is a :class:`DocumentError` naming what is wrong with the document; the
ingest records it as the document's `failed` reason instead of retrying.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from cadenza_retrieval.formats import SUPPORTED_TYPES


class DocumentError(ValueError):
    """The document cannot be read; ``code`` is machine-readable, the message says why."""

    def __init__(self, message: str, code: str = "unreadable_document") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None
    heading: str | None = None


def parse_document(raw: bytes, content_type: str) -> list[Section]:
    kind = SUPPORTED_TYPES.get(content_type)
    if kind is None:
        raise DocumentError(
            f"unsupported content type {content_type!r}; supported: "
            + ", ".join(sorted(SUPPORTED_TYPES)),
            code="unsupported_type",
        )
    if not raw.strip():
        raise DocumentError("the document is empty", code="empty_document")
    if kind == "pdf":
        return _pdf(raw)
    text = _decode(raw)
    if kind == "md":
        return _markdown(text)
    if kind == "html":
        return _html(text)
    if kind == "json":
        return _json(text)
    return [Section(text)]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"not UTF-8 text (invalid byte at offset {exc.start})", code="invalid_encoding"
        ) from None


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _markdown(text: str) -> list[Section]:
    """A section per heading, so each chunk knows the heading it sits under."""
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _MD_HEADING.match(line)
        if match:
            if "".join(lines).strip():
                sections.append(Section("\n".join(lines).strip(), heading=heading))
            heading, lines = match.group(2).strip(), []
        else:
            lines.append(line)
    if "".join(lines).strip():
        sections.append(Section("\n".join(lines).strip(), heading=heading))
    return sections


class _HtmlText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "head"})
    _BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "section", "article", "table", "ul", "ol", "pre", "hr"}
    )
    _HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._heading: str | None = None
        self._parts: list[str] = []
        self._title: list[str] = []
        self._skip = 0
        self._in_heading = False

    def _flush(self) -> None:
        text = re.sub(r"[ \t]+", " ", "".join(self._parts))
        text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
        if text:
            self.sections.append(Section(text, heading=self._heading))
        self._parts = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        elif tag in self._HEADINGS:
            self._flush()
            self._in_heading, self._title = True, []
        elif tag in self._BLOCK:
            self._parts.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self._HEADINGS and self._in_heading:
            self._in_heading = False
            self._heading = " ".join("".join(self._title).split()) or None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        (self._title if self._in_heading else self._parts).append(data)


def _html(text: str) -> list[Section]:
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.sections


def _json(text: str) -> list[Section]:
    """Each leaf as ``path: value`` on its own line: searchable, and keys give context."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", code="invalid_json"
        ) from None
    lines: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(value))))
        elif value is not None:
            lines.append(f"{path}: {value}" if path else str(value))
    return [Section("\n".join(lines))]


def _pdf(raw: bytes) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            raise DocumentError("the PDF is encrypted", code="encrypted_pdf")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise DocumentError(f"corrupt PDF: {exc}"[:500], code="corrupt_pdf") from None
    return [Section(text.strip(), page=n) for n, text in enumerate(pages, 1) if text.strip()]
