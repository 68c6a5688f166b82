"""JSON (and JSON Lines) and CSV/TSV as readable text: records as paragraphs, rows as header: value pairs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["csv_to_text", "json_to_text", "table_lines"]

_SAMPLE = 64 * 1024


def json_to_text(text: str) -> str:
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


def csv_to_text(text: str, tab_separated: bool) -> str:
    """One line per row, with each value labelled by its column header (the first row)."""
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if tab_separated else csv.excel
    if not tab_separated:
        with contextlib.suppress(csv.Error):  # too little text to tell: keep the standard dialect
            dialect = csv.Sniffer().sniff(text[:_SAMPLE], delimiters=",;\t|")
    try:
        rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    except csv.Error:
        return text
    return "\n".join(table_lines(rows))


def table_lines(rows: Iterable[Sequence[str]]) -> list[str]:
    """A table's rows as lines: each value labelled with its column header (the first row) when the table
    has one, so a row reads on its own; a one-row table as plain values.

    Example:
        >>> table_lines([["Item", "Cost"], ["Fuel", "40"], ["Tolls", ""]])
        ['Item: Fuel; Cost: 40', 'Item: Tolls']
    """
    rows = [list(row) for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        return [", ".join(row) for row in rows]
    header = [name.strip() for name in rows[0]]
    lines = []
    for row in rows[1:]:
        cells = [
            f"{header[i]}: {value.strip()}" if i < len(header) and header[i] else value.strip()
            for i, value in enumerate(row)
            if value.strip()
        ]
        lines.append("; ".join(cells))
    return lines
