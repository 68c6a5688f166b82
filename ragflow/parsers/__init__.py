"""Turn document bytes into text units, each with where it sits in its document: text, Markdown, HTML,
PDF (a unit per page), JSON, CSV, Word (per section), PowerPoint (per slide), Excel (per block of rows),
e-mail and mailboxes, Jupyter notebooks (per cell), EPUB (per chapter), source code (Python per top-level
definition) and, with the ``ocr`` extra, images and scanned pages. Bad input is a ``ParseError`` that names
the file and what to do; docs/formats.md lists what each format gives.

Example:
    >>> units = DefaultParser().parse(b"def area(r):\\n    return 3.14 * r * r\\n", {"path": "geo.py"})
    >>> [(unit.metadata["symbol"], unit.metadata["lines"]) for unit in units]
    [('area', '1-2')]
"""

from __future__ import annotations

from ._default import PARSERS_GROUP, DefaultParser
from ._formats import DocumentFormat, detect_format
from ._html import html_to_text
from ._limits import ParseLimits
from ._pdf import PDF_ENGINES

__all__ = [
    "LOCATION_FIELDS",
    "PARSERS_GROUP",
    "PDF_ENGINES",
    "DefaultParser",
    "DocumentFormat",
    "ParseLimits",
    "detect_format",
    "html_to_text",
]

LOCATION_FIELDS = (
    "page_number",
    "section",
    "slide",
    "slide_title",
    "sheet",
    "rows",
    "message",
    "attachment",
    "cell",
    "chapter",
    "symbol",
    "lines",
)
"""The metadata fields a parser sets on a unit to say where in its document the unit is; a citation
carries those its passage has."""
