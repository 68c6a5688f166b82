"""Tests for ragflow.parsers: formats, detection, and clear errors for bad input."""

from __future__ import annotations

import doctest
import io
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

import ragflow.parsers
from ragflow.documents import TextUnit
from ragflow.errors import ParseError
from ragflow.parsers import DefaultParser, DocumentFormat, detect_format, html_to_text

PARSER = DefaultParser()


def parse(data: bytes, path: str = "docs/file.txt", **metadata: object) -> list[TextUnit]:
    return PARSER.parse(data, {"path": path, **metadata})


def make_pdf(pages: list[str | None], password: str | None = None) -> bytes:
    """A real PDF from reportlab; ``None`` makes a page with a drawing but no text."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, encrypt=password)
    for text in pages:
        if text is None:
            pdf.rect(100, 100, 200, 200, fill=1)
        else:
            for i, line in enumerate(text.splitlines()):
                pdf.drawString(72, 760 - 14 * i, line)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


# -- text -----------------------------------------------------------------------------------------


def test_utf8_text_is_one_unit_with_a_copy_of_the_metadata() -> None:
    metadata = {"path": "notes/a.md", "owner": "ann"}
    [unit] = PARSER.parse("# Título\n\nÜber naïve 日本語 🎉\n".encode(), metadata)
    assert unit.text == "# Título\n\nÜber naïve 日本語 🎉\n"
    assert unit.metadata == metadata
    assert unit.metadata is not metadata


@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfline one\r\nline two\r\n",
        "line one\r\nline two\r\n".encode("utf-16"),
        "\ufeffline one\r\nline two\r\n".encode("utf-16-be"),
        "\ufeffline one\r\nline two\r\n".encode("utf-32-le"),
    ],
    ids=["utf8-bom", "utf16-le-bom", "utf16-be-bom", "utf32-le-bom"],
)
def test_byte_order_marks_are_honoured_and_newlines_normalised(data: bytes) -> None:
    assert [u.text for u in parse(data)] == ["line one\nline two\n"]


@pytest.mark.parametrize("path", ["README", "src/main.rs", "data.weird-extension", ""])
def test_unknown_extensions_that_decode_as_text_are_text(path: str) -> None:
    assert [u.text for u in parse(b"fn main() {}\n", path)] == ["fn main() {}\n"]


@pytest.mark.parametrize("data", [b"", b"   \n\n\t ", b"\xef\xbb\xbf"])
def test_empty_or_blank_documents_have_no_units(data: bytes) -> None:
    assert parse(data) == []


# -- bad input ------------------------------------------------------------------------------------


def test_latin1_text_is_refused_with_the_byte_offset_not_garbled() -> None:
    with pytest.raises(ParseError) as error:
        parse("naïve café".encode("latin-1"), "notes/old.txt")
    message = str(error.value)
    assert message.startswith("notes/old.txt: not valid UTF-8 text")
    assert "byte offset 2" in message and "ef" in message
    assert "Ã" not in message


def test_invalid_utf16_after_a_bom_names_the_offset() -> None:
    data = b"\xff\xfe" + "ok".encode("utf-16-le") + b"\x00\xd8"  # ends in a lone high surrogate
    with pytest.raises(ParseError, match=r"a\.txt: not valid utf-16-le text: .* at byte offset 6"):
        parse(data, "a.txt")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(100),
        b"PK\x03\x04\x14\x00\x06\x00" + b"word/document.xml",
        bytes(range(1, 32)) * 20,
        bytes(random.Random(0).randrange(128, 256) for _ in range(4096)),
    ],
    ids=["png", "zip", "control-bytes", "high-bytes"],
)
def test_binary_content_is_refused_naming_the_path(data: bytes) -> None:
    with pytest.raises(ParseError, match=r"^uploads/thing\.bin: binary or unsupported content"):
        parse(data, "uploads/thing.bin")


def test_utf16_without_a_bom_gets_its_own_explanation() -> None:
    with pytest.raises(ParseError, match="UTF-16 text without a byte order mark"):
        parse("plain ascii words".encode("utf-16-le"), "x.txt")


def test_a_document_without_a_path_is_still_named_in_errors() -> None:
    with pytest.raises(ParseError, match=r"^<unnamed document>: binary"):
        PARSER.parse(b"\x00\x01", {})


def test_text_with_a_few_escape_sequences_is_not_binary() -> None:
    log = b"\x1b[32mPASSED\x1b[0m test_one\n\x1b[31mFAILED\x1b[0m test_two\n\x0c"
    assert [u.text for u in parse(log, "run.log")] == [log.decode()]


# -- HTML -----------------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html>
<html><head><title>Release notes</title>
<style>body { color: red }</style>
<script>var secret = "do not index";</script></head>
<body>
<h1>Version&nbsp;2 &amp; more</h1>
<p>First   paragraph
   spans lines.</p><p>Second <b>bold</b> <a href="#">link</a>.</p>
<noscript>Enable JavaScript</noscript>
<ul><li>one</li><li>two</li></ul>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>41</td></tr></table>
<pre>  indented
    code</pre>
</body></html>"""


def test_html_keeps_visible_text_with_paragraphs_as_blank_lines() -> None:
    [unit] = parse(PAGE, "site/notes.html")
    assert unit.text == (
        "Release notes\n\nVersion 2 & more\n\nFirst paragraph spans lines.\n\nSecond bold link.\n\n"
        "one\ntwo\n\nName | Age\nAnn | 41\n\n  indented\n    code"
    )
    assert "secret" not in unit.text and "color" not in unit.text and "JavaScript" not in unit.text


def test_html_is_sniffed_without_an_extension_but_not_in_markdown() -> None:
    assert detect_format("pages/index", PAGE) is DocumentFormat.HTML
    assert detect_format("notes.md", PAGE) is DocumentFormat.TEXT
    assert [u.text for u in parse(b"<p>hi</p>", "notes.md")] == ["<p>hi</p>"]


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (b"<p>Hi <b>there</b></p>", "text/html; charset=utf-8", "Hi there"),
        (b'[{"a": 1}, {"a": 2}]', "application/json", '{\n  "a": 1\n}\n\n{\n  "a": 2\n}'),
        (b"name,city\nAnn,Oslo\n", "text/csv", "name: Ann; city: Oslo"),
        (b"<p>kept as written</p>", "text/markdown", "<p>kept as written</p>"),
    ],
)
def test_a_declared_content_type_chooses_the_format_of_a_name_without_suffix(
    data: bytes, content_type: str, expected: str
) -> None:
    assert [u.text for u in parse(data, "kafka://docs/42", content_type=content_type)] == [expected]


def test_a_filename_suffix_chooses_the_format_when_no_content_type_is_declared() -> None:
    assert [u.text for u in parse(b"<p>Hi</p>", "kafka://docs/42", filename="page.html")] == ["Hi"]
    declared = parse(b"<p>Hi</p>", "kafka://docs/42", filename="page.html", content_type="text/plain")
    assert [u.text for u in declared] == ["<p>Hi</p>"]


def test_an_unknown_content_type_leaves_the_choice_to_suffix_and_content() -> None:
    assert detect_format("notes.json", b"[]", "application/octet-stream") is DocumentFormat.JSON
    assert detect_format("x", make_pdf(["a"]), "text/plain") is DocumentFormat.PDF  # the signature wins
    assert detect_format("x", b"%PDF-1.7", None) is DocumentFormat.PDF
    assert detect_format("scan", b"...", "image/png") is DocumentFormat.IMAGE


def test_html_declaring_a_legacy_charset_is_decoded_with_it() -> None:
    page = '<html><head><meta charset="windows-1252"></head><body><p>café “quoted”</p></body></html>'
    assert [u.text for u in parse(page.encode("cp1252"), "old.htm")] == ["café “quoted”"]


def test_html_with_an_unclosed_script_drops_the_rest_rather_than_indexing_code() -> None:
    assert html_to_text("<p>kept</p><script>if (a < b) { leak() }") == "kept"


# -- JSON and CSV ---------------------------------------------------------------------------------


def test_json_is_indented_and_list_items_become_paragraphs() -> None:
    data = json.dumps([{"name": "caf\u00e9", "tags": ["a"]}, {"name": "two"}]).encode()
    [unit] = parse(data, "items.json")
    assert unit.text == '{\n  "name": "café",\n  "tags": [\n    "a"\n  ]\n}\n\n{\n  "name": "two"\n}'


def test_json_lines_records_become_paragraphs() -> None:
    [unit] = parse(b'{"id": 1}\n\n{"id": 2}\n', "log.jsonl")
    assert unit.text == '{\n  "id": 1\n}\n\n{\n  "id": 2\n}'


def test_invalid_json_is_kept_as_the_text_it_is() -> None:
    assert [u.text for u in parse(b'{"broken": ', "x.json")] == ['{"broken": ']


def test_csv_rows_are_lines_labelled_with_the_header() -> None:
    [unit] = parse(b'name,city,note\nAnn,Oslo,"likes, commas"\nBob,,\n', "people.csv")
    assert unit.text == "name: Ann; city: Oslo; note: likes, commas\nname: Bob"


@pytest.mark.parametrize(("data", "path"), [(b"a\tb\n1\t2\n", "t.tsv"), (b"a;b\n1;2\n3;4\n", "s.csv")])
def test_tsv_and_other_delimiters_are_understood(data: bytes, path: str) -> None:
    assert parse(data, path)[0].text.splitlines()[0] == "a: 1; b: 2"


# -- PDF ------------------------------------------------------------------------------------------


def test_pdf_gives_one_unit_per_page_with_its_number() -> None:
    data = make_pdf(["First page text.", "Second page,\nwith two lines.", "Third page."])
    units = parse(data, "manuals/guide.pdf", owner="ann")
    assert [u.text for u in units] == ["First page text.", "Second page,\nwith two lines.", "Third page."]
    assert [u.metadata for u in units] == [
        {"path": "manuals/guide.pdf", "owner": "ann", "page_number": n} for n in (1, 2, 3)
    ]


def test_pdf_pages_without_text_are_skipped_but_keep_numbering() -> None:
    units = parse(make_pdf(["one", None, "three"]), "a.pdf")
    assert [(u.text, u.metadata["page_number"]) for u in units] == [("one", 1), ("three", 3)]


def test_pdf_is_recognised_by_its_signature_whatever_the_name() -> None:
    assert [u.text for u in parse(make_pdf(["signed"]), "download")] == ["signed"]


def test_text_that_mentions_the_pdf_signature_is_still_text() -> None:
    assert [u.text for u in parse(b"A PDF file starts with %PDF-1.7 and ends with %%EOF.", "notes.txt")] == [
        "A PDF file starts with %PDF-1.7 and ends with %%EOF."
    ]


def test_pdf_without_any_text_is_an_error_that_mentions_ocr() -> None:
    with pytest.raises(ParseError, match=r"scan\.pdf: the PDF has 2 page\(s\) but no extractable text.*OCR"):
        parse(make_pdf([None, None]), "scan.pdf")


@pytest.mark.parametrize(
    "damage",
    [lambda pdf: pdf[: len(pdf) // 3], lambda pdf: b"%PDF-1.4\n" + random.Random(1).randbytes(3000)],
    ids=["truncated", "garbage-after-header"],
)
def test_corrupt_pdf_is_an_error_naming_path_and_pypdf_reason(damage: Callable[[bytes], bytes]) -> None:
    with pytest.raises(
        ParseError, match=r"^broken\.pdf: corrupt or unreadable PDF: PdfReadError: EOF marker not found"
    ):
        parse(damage(make_pdf(["some text"] * 3)), "broken.pdf")


def test_pdf_extension_on_non_pdf_bytes_is_an_error() -> None:
    with pytest.raises(ParseError, match=r"^fake\.pdf: corrupt or unreadable PDF: .*'%PDF-' expected"):
        PARSER.parse(b"this is not a pdf at all", {"path": "fake.pdf"})


def test_password_protected_pdf_is_an_error_saying_so() -> None:
    with pytest.raises(ParseError, match=r"^secret\.pdf: the PDF is encrypted with a password"):
        parse(make_pdf(["classified"], password="hunter2"), "secret.pdf")


def test_importing_the_parsers_does_not_load_heavy_libraries() -> None:
    heavy = "{'torch', 'sentence_transformers', 'pypdf'}"
    script = f"import sys, ragflow.parsers; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip() == "[]"


def test_the_examples_in_the_docstrings_work() -> None:
    result = doctest.testmod(ragflow.parsers)
    assert result.attempted > 0 and result.failed == 0
