"""Turn document bytes into text units: plain text and Markdown, HTML, PDF (one unit per page), JSON and
CSV, with a clear ``ParseError`` for binary, undecodable or corrupt input."""

from __future__ import annotations

import codecs
import contextlib
import csv
import enum
import io
import json
import re
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

__all__ = ["DefaultParser", "DocumentFormat", "detect_format", "html_to_text"]


class DocumentFormat(enum.Enum):
    """The formats ``DefaultParser`` reads."""

    TEXT = "text"
    """Plain text, Markdown, reStructuredText, source code: any file that decodes as text."""
    HTML = "html"
    """HTML: only the visible text is kept, paragraphs become blank-line separated."""
    PDF = "pdf"
    """PDF: one unit per page that has text, with ``page_number`` (1-based) in its metadata."""
    JSON = "json"
    """JSON (or JSON Lines): re-indented for reading; the items of a top-level list become paragraphs."""
    CSV = "csv"
    """CSV or TSV: one line per row, each value labelled with its column header."""


_EXTENSIONS = {
    ".pdf": DocumentFormat.PDF,
    ".html": DocumentFormat.HTML,
    ".htm": DocumentFormat.HTML,
    ".xhtml": DocumentFormat.HTML,
    ".shtml": DocumentFormat.HTML,
    ".json": DocumentFormat.JSON,
    ".jsonl": DocumentFormat.JSON,
    ".ndjson": DocumentFormat.JSON,
    ".csv": DocumentFormat.CSV,
    ".tsv": DocumentFormat.CSV,
}
# Files with these extensions are text even when they start like HTML (Markdown may embed HTML).
_TEXT_EXTENSIONS = frozenset(
    {".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex", ".log", ".xml", ".yaml", ".yml"}
)
_HTML_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S
)
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)

# Bytes that do not occur in text: C0 controls except tab, newlines, form feed and escape (terminal
# logs), and DEL. More than this share of them in a sample means binary content.
_CONTROL_BYTES = bytes(sorted({*range(0x20), 0x7F} - {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1B}))
_NOT_CONTROL_BYTES = bytes(sorted(set(range(256)) - set(_CONTROL_BYTES)))
_CONTROL_CHARS = re.compile("[" + re.escape(_CONTROL_BYTES.decode("ascii")) + "]")
_MAX_CONTROL_SHARE = 0.05
# Text in a legacy 8-bit encoding has a few invalid bytes (accents); binary data has a lot of them.
_MAX_INVALID_UTF8_SHARE = 0.30
_SAMPLE = 64 * 1024
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class DefaultParser:
    """Parse a document by the extension of ``metadata["path"]`` and by sniffing its content.

    Example:
        >>> DefaultParser().parse(b"<p>Hi <b>there</b></p><script>x()</script>", {"path": "a.html"})
        [TextUnit(text='Hi there', metadata={'path': 'a.html'})]
    """

    def parse(self, data: bytes, metadata: Metadata) -> list[TextUnit]:
        """Return the text units of ``data``; none for an empty or blank document.

        Raises:
            ParseError: the content is binary, not valid UTF-8 (UTF-16/32 need a BOM), or a corrupt,
                encrypted or text-less PDF. The message names the path and what is wrong.
        """
        path = str(metadata.get("path") or "<unnamed document>")
        if not data:
            return []
        document_format = detect_format(path, data)
        if document_format is DocumentFormat.PDF:
            return _parse_pdf(data, metadata, path)
        text = _decode(data, path, html=document_format is DocumentFormat.HTML)
        if document_format is DocumentFormat.HTML:
            text = html_to_text(text)
        elif document_format is DocumentFormat.JSON:
            text = _json_to_text(text)
        elif document_format is DocumentFormat.CSV:
            text = _csv_to_text(text, tab_separated=path.lower().endswith(".tsv"))
        if not text.strip():
            return []
        return [TextUnit(text, dict(metadata))]


def detect_format(path: str, data: bytes) -> DocumentFormat:
    """The format of a document: PDF if it starts with the PDF signature, else by extension, else
    HTML if the content starts like an HTML page, else text."""
    suffix = PurePosixPath(path).suffix.lower()
    if data.startswith(b"%PDF-"):
        return DocumentFormat.PDF
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if suffix not in _TEXT_EXTENSIONS and _HTML_START.match(data[:_SAMPLE]):
        return DocumentFormat.HTML
    return DocumentFormat.TEXT


# -- text decoding ----------------------------------------------------------------------------------


def _decode(data: bytes, path: str, html: bool = False) -> str:
    """Decode strictly: UTF-8, or UTF-16/32 with a byte order mark, or (HTML only) the charset the
    page declares. Never guesses, so a document is either read right or refused with the reason."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = _decode_as(data, len(bom), encoding, path)
            _refuse_binary_text(text, path)
            return _normalize_newlines(text)
    _refuse_binary_bytes(data, path)
    declared = _declared_charset(data) if html else None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if declared is None or declared == "utf-8":
            _refuse_mostly_invalid(data, path)
            raise _undecodable(data, path, exc, 0, "UTF-8") from None
        text = _decode_as(data, 0, declared, path)
    return _normalize_newlines(text)


def _decode_as(data: bytes, offset: int, encoding: str, path: str) -> str:
    try:
        return data[offset:].decode(encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(data, path, exc, offset, encoding) from None


def _undecodable(data: bytes, path: str, exc: UnicodeDecodeError, offset: int, encoding: str) -> ParseError:
    position = offset + exc.start
    bad = data[position : offset + exc.end].hex(" ")
    return ParseError(
        f"{path}: not valid {encoding} text: bytes {bad} at byte offset {position} ({exc.reason}); "
        f"save the file as UTF-8 (or UTF-16 with a byte order mark)"
    )


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if match is None:
        return None
    try:
        return codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return None


def _refuse_binary_bytes(data: bytes, path: str) -> None:
    nul = data.find(b"\0")
    if nul >= 0:
        if _looks_like_utf16(data[:_SAMPLE]):
            raise ParseError(
                f"{path}: looks like UTF-16 text without a byte order mark, which is unsupported; "
                f"save it as UTF-8 or UTF-16 with a BOM"
            )
        raise ParseError(f"{path}: binary or unsupported content (a NUL byte at offset {nul}); {_SUPPORTED}")
    sample = data[:_SAMPLE]
    controls = len(sample.translate(None, _NOT_CONTROL_BYTES))
    if controls > _MAX_CONTROL_SHARE * len(sample):
        raise ParseError(
            f"{path}: binary or unsupported content ({controls} control bytes in the first {len(sample)}); "
            f"{_SUPPORTED}"
        )


def _looks_like_utf16(sample: bytes) -> bool:
    """Whether ``sample`` looks like mostly-ASCII text in UTF-16 without a byte order mark: a NUL in
    (nearly) every other byte, and (nearly) none in between."""
    if len(sample) < 8:
        return False
    even, odd = sample[0::2], sample[1::2]
    return any(
        zeros.count(0) >= 0.9 * len(zeros) and others.count(0) <= 0.1 * len(others)
        for zeros, others in ((even, odd), (odd, even))
    )


def _refuse_binary_text(text: str, path: str) -> None:
    sample = text[:_SAMPLE]
    controls = len(_CONTROL_CHARS.findall(sample))
    if "\0" in text or controls > _MAX_CONTROL_SHARE * len(sample):
        raise ParseError(
            f"{path}: binary or unsupported content (control characters in the text); {_SUPPORTED}"
        )


def _refuse_mostly_invalid(data: bytes, path: str) -> None:
    sample = data[:_SAMPLE]
    invalid = sample.decode("utf-8", "replace").count("\ufffd")
    if invalid > _MAX_INVALID_UTF8_SHARE * len(sample):
        raise ParseError(
            f"{path}: binary or unsupported content ({invalid} invalid UTF-8 sequences in the first "
            f"{len(sample)} bytes); {_SUPPORTED}"
        )


_SUPPORTED = "supported formats are text (UTF-8), Markdown, HTML, PDF, JSON and CSV"


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- HTML -----------------------------------------------------------------------------------------

_SKIPPED = frozenset({"script", "style", "noscript", "template"})
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "details", "dialog", "div", "dl",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hgroup", "hr", "html", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "title", "ul",
    }
)  # fmt: skip
_LINES = frozenset({"br", "dd", "dt", "li", "option", "tr"})
_CELLS = frozenset({"td", "th"})
_VOID = frozenset({"br", "hr"})


class _VisibleText(HTMLParser):
    """Collect the text a browser would show, with blocks as paragraphs and list items as lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._preformatted = 0
        self._pending_break = 0  # 0: none, 1: new line, 2: blank line; emitted before the next text
        self._pending_space = False
        self._line_has_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag == "pre":
            self._preformatted += 1
        if tag in _CELLS and self._line_has_text and not self._pending_break:
            self._write(" | ")
        self._break_for(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "pre":
            self._preformatted = max(0, self._preformatted - 1)
        if tag not in _VOID:
            self._break_for(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break_for(tag)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._preformatted:
            self._write(data)
            return
        collapsed = " ".join(data.split())
        if data[:1].isspace():
            self._pending_space = True
        if collapsed:
            self._write(collapsed)
            self._pending_space = data[-1].isspace()

    def _break_for(self, tag: str) -> None:
        if tag in _BLOCKS:
            self._pending_break = 2
        elif tag in _LINES:
            self._pending_break = max(self._pending_break, 1)

    def _write(self, text: str) -> None:
        if self.parts and self._pending_break:
            self.parts.append("\n" * self._pending_break)
            self._line_has_text = False
        elif self._pending_space and self._line_has_text:
            self.parts.append(" ")
        self._pending_break = 0
        self._pending_space = False
        self.parts.append(text)
        self._line_has_text = True


def html_to_text(html: str) -> str:
    """The visible text of an HTML page: no scripts or styles, blocks separated by blank lines.

    Example:
        >>> html_to_text("<h1>Title</h1><p>One <i>two</i></p><ul><li>a</li><li>b</li></ul>")
        'Title\\n\\nOne two\\n\\na\\nb'
    """
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# -- JSON and CSV ---------------------------------------------------------------------------------


def _json_to_text(text: str) -> str:
    """Indented JSON; the items of a top-level list (or the records of JSON Lines) as paragraphs,
    so that each record tends to be a chunk of its own. Invalid JSON stays the text it is."""
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return text
    items = value if isinstance(value, list) and value else [value]
    return "\n\n".join(json.dumps(item, indent=2, ensure_ascii=False) for item in items)


def _csv_to_text(text: str, tab_separated: bool) -> str:
    """One line per row, with each value labelled by its column header (the first row)."""
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if tab_separated else csv.excel
    if not tab_separated:
        with contextlib.suppress(csv.Error):  # too little text to tell: keep the standard dialect
            dialect = csv.Sniffer().sniff(text[:_SAMPLE], delimiters=",;\t|")
    try:
        rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except csv.Error:
        return text
    if len(rows) < 2:
        return "\n".join(", ".join(row) for row in rows)
    header = [name.strip() for name in rows[0]]
    lines = []
    for row in rows[1:]:
        cells = [
            f"{header[i]}: {value.strip()}" if i < len(header) and header[i] else value.strip()
            for i, value in enumerate(row)
            if value.strip()
        ]
        lines.append("; ".join(cells))
    return "\n".join(lines)


# -- PDF ------------------------------------------------------------------------------------------


def _parse_pdf(data: bytes, metadata: Metadata, path: str) -> list[TextUnit]:
    # pypdf costs ~0.3 s to import; only PDF documents pay for it.
    import pypdf

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError(f"{path}: the PDF is encrypted with a password; decrypt it to index it")
        pages = list(reader.pages)
    except ParseError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...) on bad input
        raise ParseError(
            f"{path}: corrupt or unreadable PDF: {_first_pdf_problem(pypdf, data, exc)}"
        ) from exc
    units = []
    for number, page in enumerate(pages, start=1):
        try:
            text = page.extract_text()
        except Exception as exc:
            raise ParseError(
                f"{path}: cannot extract the text of page {number} of {len(pages)}: {_reason(exc)}"
            ) from exc
        text = _normalize_newlines(text).replace("\0", "").strip()
        if text:
            units.append(TextUnit(text, {**metadata, "page_number": number}))
    if pages and not units:
        raise ParseError(
            f"{path}: the PDF has {len(pages)} page(s) but no extractable text "
            f"(scanned or image-only? OCR is not supported)"
        )
    return units


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
