"""Word and PowerPoint files through python-docx and python-pptx: a Word document as one unit per section
under a heading (``section`` is the heading path), a deck as one unit per slide (``slide``,
``slide_title``), tables as header: value rows, and the refusals for files the libraries cannot open."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

from ._archive import open_archive
from ._formats import DocumentFormat
from ._limits import ParseContext
from ._structured import table_lines

__all__ = ["open_with", "parse_docx", "parse_pptx"]

_HEADING = re.compile(r"^(?:heading|überschrift|titre)\s*(\d)$", re.I)
SECTION_SEPARATOR = " > "
HEADERS_AND_FOOTERS = "(headers and footers)"


def parse_docx(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """One unit per run of paragraphs and tables under the same heading path, in document order; the
    headers and footers (each distinct one once) in a unit of their own."""
    open_archive(data, context, DocumentFormat.DOCX).close()
    import docx  # python-docx costs ~0.2 s to import; only Word documents pay for it

    document = open_with(lambda: docx.Document(io.BytesIO(data)), context, "Word document")
    # the style names by id, once: ``paragraph.style`` looks the default style up anew for every paragraph
    style_names = {style.style_id: style.name for style in document.styles}
    units: list[TextUnit] = []
    headings: list[tuple[int, str]] = []
    lines: list[str] = []

    def flush() -> None:
        text = "\n\n".join(lines).strip()
        if text and (len(lines) > 1 or not headings or lines[0] != headings[-1][1]):  # not a bare heading
            section = SECTION_SEPARATOR.join(title for _, title in headings)
            location = {"section": section} if section else {}
            units.append(TextUnit(text, {**metadata, **location}))
        lines.clear()

    for number, block in enumerate(document.iter_inner_content(), 1):
        if number % 200 == 0:
            context.deadline.check(f"block {number}")
        if hasattr(block, "rows"):
            lines.append("\n".join(table_lines(_docx_rows(block))))
            continue
        text = block.text.strip()
        level = _heading_level(style_names.get(block._p.style) or "")
        if level is not None and text:
            flush()
            headings[:] = [(lvl, title) for lvl, title in headings if lvl < level] + [(level, text)]
        if text:
            lines.append(text)
    flush()
    furniture = _headers_and_footers(document)
    if furniture:
        units.append(TextUnit("\n".join(furniture), {**metadata, "section": HEADERS_AND_FOOTERS}))
    return units


def _heading_level(style: str) -> int | None:
    if style.lower() == "title":
        return 0
    match = _HEADING.match(style)
    return int(match.group(1)) if match else None


def _docx_rows(table: Any) -> Iterator[list[str]]:
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if not cells or text != cells[-1]:  # a merged cell is repeated for each grid column it spans
                cells.append(text)
        yield cells


def _headers_and_footers(document: Any) -> list[str]:
    seen: dict[str, None] = {}
    for section in document.sections:
        for part in (
            section.header,
            section.first_page_header,
            section.even_page_header,
            section.footer,
            section.first_page_footer,
            section.even_page_footer,
        ):
            if part.is_linked_to_previous and section is not document.sections[0]:
                continue
            text = "\n".join(p.text.strip() for p in part.paragraphs if p.text.strip())
            if text:
                seen.setdefault(text)
    return list(seen)


def parse_pptx(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """One unit per slide with text: its title, its text frames and tables (groups included) in shape
    order, and its speaker notes."""
    open_archive(data, context, DocumentFormat.PPTX).close()
    import pptx

    presentation = open_with(lambda: pptx.Presentation(io.BytesIO(data)), context, "PowerPoint presentation")
    units = []
    for number, slide in enumerate(presentation.slides, 1):
        context.deadline.check(f"slide {number}")
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
        parts = [title] if title else []
        parts += [text for text in _shape_texts(slide.shapes, title_shape) if text]
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                parts.append("Notes: " + notes.text.strip())
        text = "\n\n".join(parts).strip()
        if text:
            location: dict[str, Any] = {"slide": number}
            if title:
                location["slide_title"] = title
            units.append(TextUnit(text, {**metadata, **location}))
    return units


def _shape_texts(shapes: Iterable[Any], skip: Any) -> Iterator[str]:
    for shape in shapes:
        if skip is not None and shape.shape_id == skip.shape_id:
            continue
        if hasattr(shape, "shapes"):  # a group
            yield from _shape_texts(shape.shapes, None)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = ([" ".join(cell.text.split()) for cell in row.cells] for row in shape.table.rows)
            yield "\n".join(table_lines(rows))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield "\n".join(p.text.strip() for p in shape.text_frame.paragraphs if p.text.strip())


def open_with(load: Any, context: ParseContext, what: str) -> Any:
    try:
        return load()
    except ParseError:
        raise
    except Exception as exc:  # the libraries raise KeyError, ValueError, lxml errors... on a damaged part
        raise ParseError(
            f"{context.path}: corrupt {what} ({type(exc).__name__}: {exc}); open and save it again"
        ) from exc
