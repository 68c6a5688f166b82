"""``DefaultParser``: detect a document's format and hand it to that format's parser, under the caps of
``ParseLimits``. Parsers registered in the entry point group ``ragflow.parsers`` (named by the file
suffix they read, without the dot) add formats or override the built-in parser of theirs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import PurePosixPath

from ragflow.documents import Metadata, Parser, TextUnit
from ragflow.errors import ConfigError, IncompleteParse, ParseError

from ._archive import refuse_ole, refuse_zip
from ._code import parse_code
from ._email import parse_email, parse_mbox
from ._epub import parse_epub
from ._formats import DocumentFormat, detect_format
from ._html import html_to_text
from ._limits import Deadline, ParseContext, ParseLimits
from ._notebook import parse_notebook
from ._ocr import parse_image
from ._office import parse_docx, parse_pptx
from ._pdf import PDF_ENGINES, parse_pdf
from ._spreadsheet import parse_xlsx
from ._structured import csv_to_text, json_to_text
from ._text import decode_text

__all__ = ["PARSERS_GROUP", "DefaultParser"]

PARSERS_GROUP = "ragflow.parsers"

FormatParser = Callable[[bytes, Metadata, ParseContext], list[TextUnit]]


def _text_parser(document_format: DocumentFormat) -> FormatParser:
    def parse(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
        return _parse_text(data, metadata, context, document_format)

    return parse


def _parse_text(
    data: bytes, metadata: Metadata, context: ParseContext, document_format: DocumentFormat
) -> list[TextUnit]:
    text = decode_text(data, context.path, html=document_format is DocumentFormat.HTML)
    if document_format is DocumentFormat.HTML:
        text = html_to_text(text)
    elif document_format is DocumentFormat.JSON:
        text = json_to_text(text)
    elif document_format is DocumentFormat.CSV:
        text = csv_to_text(text, tab_separated=context.path.lower().endswith(".tsv"))
    return [TextUnit(text, dict(metadata))] if text.strip() else []


def _refuse_ole(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    raise refuse_ole(data, context)


def _refuse_zip(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    raise refuse_zip(data, context)


_BUILT_IN: dict[DocumentFormat, FormatParser] = {
    DocumentFormat.TEXT: _text_parser(DocumentFormat.TEXT),
    DocumentFormat.HTML: _text_parser(DocumentFormat.HTML),
    DocumentFormat.JSON: _text_parser(DocumentFormat.JSON),
    DocumentFormat.CSV: _text_parser(DocumentFormat.CSV),
    DocumentFormat.PDF: parse_pdf,
    DocumentFormat.DOCX: parse_docx,
    DocumentFormat.PPTX: parse_pptx,
    DocumentFormat.XLSX: parse_xlsx,
    DocumentFormat.EMAIL: parse_email,
    DocumentFormat.MBOX: parse_mbox,
    DocumentFormat.NOTEBOOK: parse_notebook,
    DocumentFormat.EPUB: parse_epub,
    DocumentFormat.CODE: parse_code,
    DocumentFormat.IMAGE: parse_image,
    DocumentFormat.OLE: _refuse_ole,
    DocumentFormat.ZIP: _refuse_zip,
}


class DefaultParser:
    """Parse a document by its content and the suffix of ``metadata["path"]``: every format of
    ``DocumentFormat`` (docs/formats.md), plus those of ``parsers`` and of the ``ragflow.parsers``
    entry points.

    Args:
        parsers: Parsers by file suffix without the dot (``{"odt": OdtParser()}``); they take precedence
            over the entry points, which take precedence over the built-in parsers.
        limits: The caps of one parse (zip sizes, empty rows, attachments, time).
        pdf_engine: ``"pypdf"`` (default) or ``"pypdfium2"`` (the ``pdfium`` extra; faster).
        ocr: Read scanned pages and images by OCR when the ``ocr`` extra is installed.
        entry_point_parsers: Whether to load the ``ragflow.parsers`` entry points.

    Example:
        >>> DefaultParser().parse(b"<p>Hi <b>there</b></p><script>x()</script>", {"path": "a.html"})
        [TextUnit(text='Hi there', metadata={'path': 'a.html'})]
    """

    def __init__(
        self,
        parsers: Mapping[str, Parser] | None = None,
        *,
        limits: ParseLimits | None = None,
        pdf_engine: str = "pypdf",
        ocr: bool = True,
        entry_point_parsers: bool = True,
    ) -> None:
        if pdf_engine not in PDF_ENGINES:
            raise ConfigError(f"unknown pdf_engine {pdf_engine!r}; choose one of {', '.join(PDF_ENGINES)}")
        self.limits = limits or ParseLimits()
        self.pdf_engine = pdf_engine
        self.ocr = ocr
        self.parsers = {**(_entry_point_parsers() if entry_point_parsers else {}), **(parsers or {})}
        self.parsers = {suffix.lower().lstrip("."): parser for suffix, parser in self.parsers.items()}

    def parse(self, data: bytes, metadata: Metadata) -> list[TextUnit]:
        """Return the text units of ``data``; none for an empty or blank document.

        The format comes from the content's signature, else from ``metadata["content_type"]`` (a media
        type such as ``text/html``), else from the suffix of ``metadata["filename"]`` or, without one,
        of ``metadata["path"]`` (a source whose ids carry no file name, like Kafka's, sets those two).

        Raises:
            IncompleteParse: parts could not be read (a scanned page without OCR, an attachment past
                its cap...); its ``units`` are the rest, its message names the parts and what to do.
            ParseError: nothing can be read: binary, undecodable, corrupt, encrypted, past a cap. The
                message names the path and what is wrong.
        """
        path = str(metadata.get("path") or "<unnamed document>")
        name = str(metadata.get("filename") or path)
        declared = metadata.get("content_type")
        media_type = declared if isinstance(declared, str) else None
        deadline = Deadline(path, self.limits.max_seconds)
        return self._parse(data, metadata, path, name, deadline, 0, media_type)

    def _parse(
        self,
        data: bytes,
        metadata: Metadata,
        path: str,
        name: str,
        deadline: Deadline,
        depth: int,
        media_type: str | None = None,
    ) -> list[TextUnit]:
        if not data:
            return []

        def nested(inner: bytes, inner_metadata: Metadata, inner_name: str) -> list[TextUnit]:
            return self._parse(
                inner, inner_metadata, f"{path} > {inner_name}", inner_name, deadline, depth + 1
            )

        context = ParseContext(path, self.limits, deadline, nested, depth, self.ocr, self.pdf_engine)
        suffix = PurePosixPath(name).suffix.lower().lstrip(".")
        custom = self.parsers.get(suffix)
        if custom is not None:
            return custom.parse(data, metadata)
        document_format = detect_format(name, data, media_type)
        units = _BUILT_IN[document_format](data, metadata, context)
        if context.warnings:
            message = "; ".join(context.warnings)
            if not units:
                raise ParseError(message if message.startswith(path) else f"{path}: {message}")
            raise IncompleteParse(message, units)
        return units


def _entry_point_parsers() -> dict[str, Parser]:
    found: dict[str, Parser] = {}
    for entry_point in entry_points(group=PARSERS_GROUP):
        try:
            loaded = entry_point.load()
        except ImportError as exc:
            raise ConfigError(
                f"parser {entry_point.name!r} ({entry_point.value}) is registered in {PARSERS_GROUP!r} but "
                f"cannot be imported ({exc}); install its dependencies or uninstall it"
            ) from exc
        found[entry_point.name] = loaded() if isinstance(loaded, type) else loaded
    return found
