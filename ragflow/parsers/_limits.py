"""The caps one parse runs under (unpacked archive size, empty rows, attachment size, time) and the context
a format parser gets: the document's path for messages, the caps, a deadline, a way to parse an attachment
and a list for the parts it could not read."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

__all__ = ["Deadline", "ParseContext", "ParseLimits"]

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """How much one document may cost to parse, so that one hostile file cannot stall the pipeline.

    The size of a document's bytes is capped by its source (``FolderSource(max_file_size=...)``); these
    cap what those bytes unfold into."""

    max_unpacked_bytes: int = 256 * _MIB
    """An Office file's or e-book's zip members, uncompressed, together (checked before reading any)."""
    max_empty_rows: int = 10_000
    """Empty rows in a row after which the rest of a spreadsheet sheet is not read."""
    max_attachment_bytes: int = 25 * _MIB
    """One e-mail attachment, decoded (larger ones are named in the document's error, not parsed)."""
    max_seconds: float = 120.0
    """Wall-clock time to parse one document, checked between pages, slides, sheets, cells..."""
    max_depth: int = 3
    """Attachments inside attachments (a message forwarded as an attachment...) read this deep."""
    ocr_max_pixels: int = 40_000_000
    """An image (or a rendered page) larger than this is not read by OCR."""

    def __post_init__(self) -> None:
        for name in ("max_unpacked_bytes", "max_empty_rows", "max_attachment_bytes", "max_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"ParseLimits.{name} must be at least 1, got {getattr(self, name)}")
        if self.max_seconds <= 0:
            raise ValueError(f"ParseLimits.max_seconds must be > 0, got {self.max_seconds}")


class Deadline:
    """The time cap of one parse: ``check`` raises once it has passed."""

    def __init__(self, path: str, seconds: float) -> None:
        self.path = path
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self, where: str) -> None:
        """Raise ``ParseError`` naming ``where`` the parse got to if the time cap has passed."""
        if time.monotonic() > self._end:
            raise ParseError(
                f"{self.path}: parsing took longer than {self.seconds:g} s (stopped at {where}); "
                f"split the file, or raise ParseLimits(max_seconds=...) for it"
            )


@dataclass(slots=True)
class ParseContext:
    """What a format parser gets besides the bytes and metadata."""

    path: str
    """The document's path (or ``<unnamed document>``), for messages."""
    limits: ParseLimits
    deadline: Deadline
    parse_nested: Callable[[bytes, Metadata, str], list[TextUnit]]
    """``parse_nested(data, metadata, file_name)``: parse an attachment with every parser, one level
    deeper; its format is found from ``file_name`` and its content, its errors name it after ``path``."""
    depth: int = 0
    ocr: bool = True
    """Whether OCR may be used (when its extra is installed)."""
    pdf_engine: str = "pypdf"
    warnings: list[str] = field(default_factory=list)
    """Parts that could not be read; the document is indexed without them and they become its error."""
