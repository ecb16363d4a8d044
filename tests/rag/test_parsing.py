from __future__ import annotations

import itertools

import pytest
from cadenza_rag import DocumentError, chunk_sections, chunk_text, parse_document
from cadenza_rag.parsing import Section
from cadenza_retrieval import resolve_content_type

pytestmark = pytest.mark.unit


def _pdf(*pages: str) -> bytes:
    """A minimal valid PDF with one text line per page (offsets computed, so pypdf reads
    it without repairs)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>")
    font = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF".encode()
    return out


def test_chunks_overlap_and_cover_the_text() -> None:
    text = " ".join(f"word{i}" for i in range(400))
    chunks = chunk_text(text, size=200, overlap=50)
    assert len(chunks) > 5
    assert all(len(c) <= 200 for c in chunks)
    assert chunks[0].startswith("word0 ")
    assert chunks[-1].endswith("word399")
    for left, right in itertools.pairwise(chunks):
        assert left.split()[-1] in right.split()[:12], "neighbours share an overlap"
        assert right.split()[0] in text.split(), "chunks start on a whole word"


def test_empty_text_has_no_chunks() -> None:
    assert chunk_text("  \n ", 100, 10) == []


def test_chunks_keep_page_heading_and_running_position() -> None:
    sections = [Section("a " * 150, page=1, heading="Intro"), Section("b " * 150, page=2)]
    chunks = chunk_sections(sections, 120, 20)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert {(c.page, c.heading) for c in chunks} == {(1, "Intro"), (2, None)}


def test_markdown_sections_follow_headings_outside_code_fences() -> None:
    md = "Preface.\n# Setup\nInstall it.\n```\n# not a heading\n```\n## Use\nRun it.\n"
    sections = parse_document(md.encode(), "text/markdown")
    assert [(s.heading, s.text.splitlines()[0]) for s in sections] == [
        (None, "Preface."),
        ("Setup", "Install it."),
        ("Use", "Run it."),
    ]


def test_html_drops_scripts_and_keeps_headings() -> None:
    html = (
        "<html><head><title>x</title><script>var a=1;</script></head><body>"
        "<h1>Returns</h1><p>Within 14 days.</p><p>With a receipt.</p></body></html>"
    )
    (section,) = parse_document(html.encode(), "text/html")
    assert section.heading == "Returns"
    assert section.text == "Within 14 days.\n\nWith a receipt."


def test_json_becomes_path_value_lines() -> None:
    (section,) = parse_document(b'{"faq": [{"q": "Refunds?", "a": "14 days"}]}', "application/json")
    assert section.text == "faq[0].q: Refunds?\nfaq[0].a: 14 days"


def test_pdf_pages_are_numbered() -> None:
    sections = parse_document(_pdf("First page text", "Second page text"), "application/pdf")
    assert [(s.page, s.text) for s in sections] == [
        (1, "First page text"),
        (2, "Second page text"),
    ]


@pytest.mark.parametrize(
    ("raw", "content_type", "code"),
    [
        (b"%PDF-1.4\ngarbage", "application/pdf", "corrupt_pdf"),
        (b"   \n", "text/plain", "empty_document"),
        (b"\xff\xfe\xfa", "text/plain", "invalid_encoding"),
        (b"{oops", "application/json", "invalid_json"),
        (b"data", "image/png", "unsupported_type"),
    ],
)
def test_unreadable_documents_name_the_problem(raw: bytes, content_type: str, code: str) -> None:
    with pytest.raises(DocumentError) as err:
        parse_document(raw, content_type)
    assert err.value.code == code


def test_content_type_falls_back_to_the_extension_only_for_generic_types() -> None:
    assert resolve_content_type("text/markdown; charset=utf-8", "a.txt") == "text/markdown"
    assert resolve_content_type("application/octet-stream", "notes.MD") == "text/markdown"
    assert resolve_content_type(None, "report.pdf") == "application/pdf"
    assert resolve_content_type("image/png", "a.txt") is None
    assert resolve_content_type(None, "a.exe") is None
