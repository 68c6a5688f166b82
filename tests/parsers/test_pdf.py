"""PDF pages through both engines, and scanned pages (no text layer) with and without OCR."""

from __future__ import annotations

import random

import pytest

from ragflow.errors import IncompleteParse, ParseError
from ragflow.parsers import DefaultParser
from tests.parsers.builders import make_pdf_with_scan, png, text_image
from tests.parsers.conftest import located, parse
from tests.test_parsers import make_pdf

PDFIUM = DefaultParser(pdf_engine="pypdfium2")
SCAN = text_image(["Invoice 4471 was paid in March", "by the harbor office"])


def test_pypdfium2_gives_the_same_pages_as_pypdf() -> None:
    data = make_pdf(["First page text.", "Second page,\nwith two lines.", "Third page."])
    assert [(u.text, u.metadata) for u in parse(data, "a.pdf", PDFIUM)] == [
        (u.text, u.metadata) for u in parse(data, "a.pdf")
    ]


def test_pypdfium2_refuses_encrypted_and_corrupt_pdfs_clearly() -> None:
    with pytest.raises(ParseError, match=r"^s\.pdf: the PDF is encrypted with a password"):
        parse(make_pdf(["classified"], password="hunter2"), "s.pdf", PDFIUM)
    with pytest.raises(ParseError, match=r"^b\.pdf: corrupt or unreadable PDF: PdfiumError"):
        parse(b"%PDF-1.4\n" + random.Random(1).randbytes(3000), "b.pdf", PDFIUM)


def test_an_unknown_pdf_engine_is_a_config_error() -> None:
    with pytest.raises(Exception, match="unknown pdf_engine 'fitz'; choose one of pypdf, pypdfium2"):
        DefaultParser(pdf_engine="fitz")


@pytest.mark.parametrize("engine", ["pypdf", "pypdfium2"])
def test_without_ocr_a_scanned_page_is_named_and_the_other_pages_are_indexed(
    monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setattr("ragflow.parsers._pdf.ocr_available", lambda: False)
    data = make_pdf_with_scan(["Typed cover page", "Typed page two", "Typed page three", SCAN])
    with pytest.raises(IncompleteParse) as error:
        parse(data, "x.pdf", DefaultParser(pdf_engine=engine))
    assert str(error.value) == "page 4 of x.pdf has no text layer; install ragflow[ocr] to read it"
    assert located(error.value.units, "page_number") == [(1,), (2,), (3,)]


def test_without_ocr_an_all_scanned_pdf_and_an_image_are_errors_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ragflow.parsers._pdf.ocr_available", lambda: False)
    monkeypatch.setattr("ragflow.parsers._ocr.ocr_available", lambda: False)
    with pytest.raises(ParseError, match=r"^scan\.pdf: pages 1, 2 of scan\.pdf have no text layer; install"):
        parse(make_pdf_with_scan([SCAN, SCAN]), "scan.pdf")
    with pytest.raises(
        ParseError, match=r"^photo\.png: an image, whose text only OCR can read; install ragflow"
    ):
        parse(png(SCAN), "photo.png")


def test_with_ocr_a_scanned_page_is_read_and_cited_by_page() -> None:
    units = parse(make_pdf_with_scan(["Typed cover page", SCAN]), "x.pdf")
    assert located(units, "page_number") == [(1,), (2,)]
    assert units[0].text == "Typed cover page"
    words = units[1].text.lower().split()
    assert {"invoice", "4471", "march", "harbor", "office"} <= set(words), units[1].text


def test_with_ocr_an_image_file_is_read_line_by_line() -> None:
    [unit] = parse(png(SCAN), "scans/receipt.png")
    lines = unit.text.lower().splitlines()
    assert len(lines) == 2 and "invoice 4471" in lines[0] and "harbor office" in lines[1], unit.text
