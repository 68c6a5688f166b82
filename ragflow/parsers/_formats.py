"""Which format a document is in: by its content first (a PDF signature, a zip archive's known member, an
OLE2 container, an image signature), then by its declared media type (a ``content_type`` such as a Kafka
header or an HTTP ``Content-Type``), then by its suffix, then by sniffing text."""

from __future__ import annotations

import enum
import io
import re
import zipfile
from pathlib import PurePosixPath

__all__ = ["OFFICE_FORMATS", "DocumentFormat", "detect_format", "media_type_format"]


class DocumentFormat(enum.Enum):
    """The formats ``DefaultParser`` reads (docs/formats.md says what it takes from each)."""

    TEXT = "text"
    """Plain text, Markdown, reStructuredText: any file that decodes as text."""
    HTML = "html"
    """HTML: only the visible text is kept, paragraphs become blank-line separated."""
    PDF = "pdf"
    """PDF: one unit per page that has text, with ``page_number`` (1-based) in its metadata."""
    JSON = "json"
    """JSON (or JSON Lines): re-indented for reading; the items of a top-level list become paragraphs."""
    CSV = "csv"
    """CSV or TSV: one line per row, each value labelled with its column header."""
    DOCX = "docx"
    """Word: one unit per section under a heading, with the heading path as ``section``."""
    PPTX = "pptx"
    """PowerPoint: one unit per slide (``slide``, ``slide_title``), speaker notes included."""
    XLSX = "xlsx"
    """Excel: one unit per block of rows of a sheet (``sheet``, ``rows``), cells as header: value pairs."""
    EMAIL = "email"
    """One e-mail message (.eml): headers as metadata, the body, and its attachments parsed."""
    MBOX = "mbox"
    """A mailbox of messages (.mbox), each read as an e-mail with its ``message`` number."""
    NOTEBOOK = "notebook"
    """A Jupyter notebook: one unit per cell (``cell``), text outputs included."""
    EPUB = "epub"
    """An e-book: one unit per chapter in reading order (``chapter``)."""
    CODE = "code"
    """Source code: Python split at top-level definitions (``symbol``, ``lines``), other languages whole."""
    IMAGE = "image"
    """A picture (.png, .jpg, .tiff...): its text by OCR, with the ``ocr`` extra."""
    OLE = "ole"
    """An OLE2 container: a password-protected Office file or a legacy .doc/.xls/.ppt, refused clearly."""
    ZIP = "zip"
    """A zip archive that is none of the above (or a truncated Office file), refused clearly."""


OFFICE_FORMATS = {
    DocumentFormat.DOCX: "Word document",
    DocumentFormat.PPTX: "PowerPoint presentation",
    DocumentFormat.XLSX: "Excel workbook",
    DocumentFormat.EPUB: "EPUB e-book",
}

_SUFFIXES = {
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
    ".docx": DocumentFormat.DOCX,
    ".docm": DocumentFormat.DOCX,
    ".pptx": DocumentFormat.PPTX,
    ".pptm": DocumentFormat.PPTX,
    ".xlsx": DocumentFormat.XLSX,
    ".xlsm": DocumentFormat.XLSX,
    ".eml": DocumentFormat.EMAIL,
    ".mbox": DocumentFormat.MBOX,
    ".ipynb": DocumentFormat.NOTEBOOK,
    ".epub": DocumentFormat.EPUB,
    ".png": DocumentFormat.IMAGE,
    ".jpg": DocumentFormat.IMAGE,
    ".jpeg": DocumentFormat.IMAGE,
    ".tif": DocumentFormat.IMAGE,
    ".tiff": DocumentFormat.IMAGE,
    ".bmp": DocumentFormat.IMAGE,
    ".gif": DocumentFormat.IMAGE,
    ".webp": DocumentFormat.IMAGE,
    ".doc": DocumentFormat.OLE,
    ".xls": DocumentFormat.OLE,
    ".ppt": DocumentFormat.OLE,
    ".msg": DocumentFormat.OLE,
}
# Declared media types; ``application/octet-stream`` and unknown types say nothing, so the suffix decides.
_MEDIA_TYPES = {
    "application/pdf": DocumentFormat.PDF,
    "text/html": DocumentFormat.HTML,
    "application/xhtml+xml": DocumentFormat.HTML,
    "application/json": DocumentFormat.JSON,
    "application/x-ndjson": DocumentFormat.JSON,
    "application/jsonl": DocumentFormat.JSON,
    "text/csv": DocumentFormat.CSV,
    "text/tab-separated-values": DocumentFormat.CSV,
    "text/plain": DocumentFormat.TEXT,
    "text/markdown": DocumentFormat.TEXT,
    "text/x-markdown": DocumentFormat.TEXT,
    "text/x-rst": DocumentFormat.TEXT,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": DocumentFormat.DOCX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": DocumentFormat.PPTX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": DocumentFormat.XLSX,
    "message/rfc822": DocumentFormat.EMAIL,
    "application/mbox": DocumentFormat.MBOX,
    "application/x-ipynb+json": DocumentFormat.NOTEBOOK,
    "application/epub+zip": DocumentFormat.EPUB,
    "text/x-python": DocumentFormat.CODE,
    "application/msword": DocumentFormat.OLE,
    "application/vnd.ms-excel": DocumentFormat.OLE,
    "application/vnd.ms-powerpoint": DocumentFormat.OLE,
}
CODE_SUFFIXES = frozenset(
    {
        ".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".scala",
        ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".cs", ".rb", ".php", ".swift", ".sh", ".bash", ".zsh",
        ".sql", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".r", ".lua", ".pl", ".dockerfile",
    }
)  # fmt: skip
# Files with these suffixes are text even when they start like HTML (Markdown may embed HTML).
_TEXT_SUFFIXES = frozenset(
    {".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex", ".log", ".xml"}
)
_HTML_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S
)
_ZIP_MEMBERS = (
    ("word/document.xml", DocumentFormat.DOCX),
    ("ppt/presentation.xml", DocumentFormat.PPTX),
    ("xl/workbook.xml", DocumentFormat.XLSX),
    ("META-INF/container.xml", DocumentFormat.EPUB),
)
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_IMAGE_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"II*\x00",
    b"MM\x00*",
    b"GIF87a",
    b"GIF89a",
    b"BM",
)
# three header lines or more at the very start, one of them a header every message has
_HEADER_LINES = re.compile(rb"\A(?:[A-Za-z][\w-]*:[^\n]*\r?\n(?:[ \t][^\n]*\r?\n)*){3}")
_MAIL_HEADER = re.compile(rb"^(?:From|Received|Message-ID|Return-Path|Delivered-To):", re.I | re.M)
# "From sender Tue Mar  4 09:30:00 2025": the separator line mbox writers put before each message
_MBOX_START = re.compile(rb"\AFrom \S+ +\w{3} \w{3} [ \d]\d \d\d:\d\d(?::\d\d)? (?:\S+ )?\d{4}\r?\n")


def media_type_format(media_type: str | None) -> DocumentFormat | None:
    """The format a declared media type names (parameters such as ``; charset=utf-8`` ignored), or
    ``None`` when it names none that ``DefaultParser`` reads (``application/octet-stream``...).

    Example:
        >>> media_type_format("text/html; charset=utf-8").value
        'html'
    """
    if not media_type:
        return None
    essence = media_type.split(";", 1)[0].strip().lower()
    if essence.startswith("image/"):
        return DocumentFormat.IMAGE
    return _MEDIA_TYPES.get(essence)


def detect_format(path: str, data: bytes, media_type: str | None = None) -> DocumentFormat:
    """The format of a document: by signature (PDF, zip with a known member, OLE2, images), else by its
    declared ``media_type`` (see ``media_type_format``), else by suffix, else e-mail or mailbox if it
    starts with mail headers, else HTML if it starts like an HTML page, else text.

    Example:
        >>> detect_format("report.pdf", b"%PDF-1.7 ...").value
        'pdf'
        >>> detect_format("kafka://news/42", b"<p>Hi</p>", "text/html").value
        'html'
    """
    declared = media_type_format(media_type)
    suffix = PurePosixPath(path).suffix.lower()
    if data.startswith(b"%PDF-"):
        return DocumentFormat.PDF
    if data.startswith(b"PK\x03\x04"):
        found = _zip_format(data)
        if found is not None:
            return found
        if (declared or _SUFFIXES.get(suffix)) in OFFICE_FORMATS:
            return DocumentFormat.ZIP  # a damaged Office file: refused as such, not as "binary"
    if data.startswith(_OLE_SIGNATURE):
        return DocumentFormat.OLE
    if data.startswith(_IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return DocumentFormat.IMAGE
    if declared is not None:
        return declared
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix in CODE_SUFFIXES:
        return DocumentFormat.CODE
    if suffix not in _TEXT_SUFFIXES:
        head = data[:4096]
        if _MBOX_START.match(head):
            return DocumentFormat.MBOX
        headers = _HEADER_LINES.match(head)
        if headers and _MAIL_HEADER.search(headers.group()):
            return DocumentFormat.EMAIL
        if _HTML_START.match(data[: 64 * 1024]):
            return DocumentFormat.HTML
    return DocumentFormat.TEXT


def _zip_format(data: bytes) -> DocumentFormat | None:
    """The Office or e-book format a zip archive holds, by its members; ``None`` for another zip or
    one whose directory cannot be read (truncated)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    for member, found in _ZIP_MEMBERS:
        if member in names:
            return found
    return DocumentFormat.ZIP
