"""Excel workbooks through openpyxl in read-only mode (rows streamed, memory bounded whatever the size):
each sheet in blocks of rows, each row as header: value pairs so that it is retrievable on its own, formulas
as their cached values; ``sheet`` and ``rows`` say where a block is."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from typing import Any

from ragflow.documents import Metadata, TextUnit

from ._archive import open_archive
from ._formats import DocumentFormat
from ._limits import ParseContext
from ._office import open_with
from ._structured import table_lines

__all__ = ["parse_xlsx"]

_BLOCK_ROWS = 20
"""Rows per unit at most: a block is about one chunk, so its ``rows`` cite a row range that small."""
_BLOCK_CHARS = 320
"""Characters of rendered rows per unit at most: 80-140 tokens (numbers and codes tokenize densely), about
one chunk of the local model."""


def parse_xlsx(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """Units of at most ``_BLOCK_ROWS`` rows (fewer when long) per sheet, in sheet order; the first
    non-empty row of a sheet is its header when all of its values are text."""
    open_archive(data, context, DocumentFormat.XLSX).close()
    import openpyxl

    workbook = open_with(
        lambda: openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True),
        context,
        "Excel workbook",
    )
    try:
        units: list[TextUnit] = []
        for sheet in workbook.worksheets:
            units += _sheet_units(sheet.title, sheet.iter_rows(values_only=True), metadata, context)
        return units
    finally:
        workbook.close()


def _sheet_units(
    title: str, rows: Iterable[tuple[Any, ...]], metadata: Metadata, context: ParseContext
) -> list[TextUnit]:
    units: list[TextUnit] = []
    header: list[str] | None = None
    header_row = 0
    block: list[tuple[int, list[str]]] = []
    size = 0
    empty_run = 0
    limit = context.limits.max_empty_rows

    def flush() -> None:
        nonlocal size
        if block and header is not None:
            lines = table_lines([header] + [cells for _, cells in block])
            first, last = block[0][0], block[-1][0]
            span = str(first) if first == last else f"{first}-{last}"
            units.append(TextUnit("\n".join(lines), {**metadata, "sheet": title, "rows": span}))
        block.clear()
        size = 0

    for number, values in enumerate(rows, 1):
        if number % 1000 == 0:
            context.deadline.check(f"sheet {title!r} row {number}")
        cells = [_cell_text(value) for value in values]
        if not any(cells):
            empty_run += 1
            if empty_run >= limit:
                context.warnings.append(
                    f"sheet {title!r} of {context.path} has {limit:,} empty rows in a row from row "
                    f"{number - empty_run + 1}; the rest of the sheet was not read "
                    f"(delete the empty rows, or raise ParseLimits(max_empty_rows=...))"
                )
                break
            continue
        empty_run = 0
        if header is None:
            if all(isinstance(value, str) or value is None for value in values):
                header, header_row = cells, number
                continue
            header = [_column_letter(i) for i in range(len(cells))]
        block.append((number, cells))
        size += sum(len(cell) + len(name) + 4 for cell, name in zip(cells, header, strict=False) if cell)
        if len(block) >= _BLOCK_ROWS or size >= _BLOCK_CHARS:
            flush()
    flush()
    if header is not None and not units:  # a sheet that is only its header row
        units.append(
            TextUnit(
                " | ".join(c for c in header if c), {**metadata, "sheet": title, "rows": str(header_row)}
            )
        )
    return units


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
