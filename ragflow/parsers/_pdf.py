"""PDF: one unit per page with text (``page_number``, 1-based), through pypdf (the default) or pypdfium2
(``DefaultParser(pdf_engine="pypdfium2")``, faster: docs/benchmarks.md). A page without a text layer that
holds an image is read by OCR when the ``ocr`` extra is installed; without it the page is named in the
document's error and the other pages are indexed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

from ._limits import ParseContext
from ._ocr import INSTALL_HINT, ocr_available, ocr_image
from ._text import normalize_newlines

__all__ = ["PDF_ENGINES", "parse_pdf"]

PDF_ENGINES = ("pypdf", "pypdfium2")
_OCR_SCALE = 200 / 72  # render at 200 dpi: small print stays legible, a page stays ~1700x2300 pixels


def parse_pdf(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """The units of a PDF's pages that have text (by extraction, or by OCR for scanned pages)."""
    pages = _pypdfium2_pages if context.pdf_engine == "pypdfium2" else _pypdf_pages
    units = []
    unread: list[int] = []
    count = 0
    for number, text, has_image in pages(data, context):
        count = number
        context.deadline.check(f"page {number}")
        text = normalize_newlines(text).replace("\0", "").strip()
        if not text and has_image:
            if context.ocr and ocr_available():
                text = _ocr_page(data, number, context)
            else:
                unread.append(number)
        if text:
            units.append(TextUnit(text, {**metadata, "page_number": number}))
    if unread:
        numbers = ", ".join(map(str, unread))
        if len(unread) == 1:
            context.warnings.append(f"page {numbers} of {context.path} has no text layer; {INSTALL_HINT}")
        else:
            hint = INSTALL_HINT.removesuffix("it") + "them"
            context.warnings.append(f"pages {numbers} of {context.path} have no text layer; {hint}")
    elif count and not units:
        raise ParseError(
            f"{context.path}: the PDF has {count} page(s) but no extractable text "
            f"(no text layer, and no image for OCR to read)"
        )
    return units


# -- pypdf ----------------------------------------------------------------------------------------


def _pypdf_pages(data: bytes, context: ParseContext) -> Iterator[tuple[int, str, bool]]:
    # pypdf costs ~0.3 s to import; only PDF documents pay for it.
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError(f"{context.path}: the PDF is encrypted with a password; decrypt it to index it")
        pages = list(reader.pages)
    except ParseError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...) on bad input
        raise ParseError(
            f"{context.path}: corrupt or unreadable PDF: {_first_pdf_problem(pypdf, data, exc)}"
        ) from exc
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text()
        except Exception as exc:
            raise ParseError(
                f"{context.path}: cannot extract the text of page {number} of {len(pages)}: {_reason(exc)}"
            ) from exc
        yield number, text, not text.strip() and _has_xobjects(page)


def _has_xobjects(page: Any) -> bool:
    """Whether a page draws an external object (a scan is an image XObject); cheap, without decoding."""
    try:
        resources: Any = page.get("/Resources")
        return resources is not None and bool(resources.get_object().get("/XObject"))
    except Exception:
        return False


def _first_pdf_problem(pypdf: Any, data: bytes, error: Exception) -> str:
    """Why a PDF cannot be read. Lenient reading recovers what it can and fails late with a vague
    error ("Stream has ended unexpectedly"); strict reading stops at the first real problem
    ("EOF marker not found"), which is what the user needs to hear."""
    try:
        pypdf.PdfReader(io.BytesIO(data), strict=True).pages[0]
    except Exception as strict_error:
        return _reason(strict_error)
    return _reason(error)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- pypdfium2 ------------------------------------------------------------------------------------


def _pypdfium2_pages(data: bytes, context: ParseContext) -> Iterator[tuple[int, str, bool]]:
    document = _pdfium_document(data, context)
    try:
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                text = textpage.get_text_bounded()
                textpage.close()
                has_image = not text.strip() and any(True for _ in page.get_objects(filter=(3,), max_depth=2))
            finally:
                page.close()
            yield index + 1, text, has_image
    finally:
        document.close()


def _pdfium_document(data: bytes, context: ParseContext) -> Any:
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise ParseError(
            f"{context.path}: the pypdfium2 PDF engine is chosen but not installed; "
            f"pip install 'ragflow[pdfium]' or use the default pdf_engine='pypdf'"
        ) from None
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ParseError(
                f"{context.path}: the PDF is encrypted with a password; decrypt it to index it"
            ) from None
        raise ParseError(f"{context.path}: corrupt or unreadable PDF: {_reason(exc)}") from None


def _ocr_page(data: bytes, number: int, context: ParseContext) -> str:
    """OCR of page ``number`` rendered by pypdfium2 (installed with the ``ocr`` extra)."""
    document = _pdfium_document(data, context)
    try:
        page = document[number - 1]
        try:
            width, height = page.get_size()
            scale = min(_OCR_SCALE, (context.limits.ocr_max_pixels / max(width * height, 1)) ** 0.5)
            image = page.render(scale=scale).to_pil()
        finally:
            page.close()
    finally:
        document.close()
    return ocr_image(image, context)
