"""Jupyter notebooks (.ipynb, nbformat 4 and 3): one unit per cell in order (``cell``, 1-based, and
``cell_type``), markdown and code as written, code followed by its text outputs; images, HTML outputs
and widget state are skipped."""

from __future__ import annotations

import json
from typing import Any

from ragflow.documents import Metadata, TextUnit
from ragflow.errors import ParseError

from ._limits import ParseContext
from ._text import decode_text

__all__ = ["parse_notebook"]

_MAX_OUTPUT_CHARS = 2000
"""Text output kept per cell: a cell that prints a million lines should not drown the notebook."""


def parse_notebook(data: bytes, metadata: Metadata, context: ParseContext) -> list[TextUnit]:
    """The units of a notebook's cells that have text."""
    text = decode_text(data, context.path)
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"{context.path}: not a Jupyter notebook: invalid JSON at line {exc.lineno} column {exc.colno} "
            f"({exc.msg}); open it in Jupyter and save it again"
        ) from None
    cells = _cells(notebook)
    if cells is None:
        raise ParseError(
            f"{context.path}: not a Jupyter notebook: the JSON has no list of 'cells'; "
            f"save it from Jupyter (nbformat 4) to index it"
        )
    units = []
    for number, cell in enumerate(cells, 1):
        if number % 100 == 0:
            context.deadline.check(f"cell {number}")
        if not isinstance(cell, dict):
            continue
        kind = str(cell.get("cell_type") or "code")
        parts = [_joined(cell.get("source", cell.get("input")))]
        if kind == "code":
            outputs = [_output_text(o) for o in cell.get("outputs") or () if isinstance(o, dict)]
            output = "\n".join(o for o in outputs if o).strip()
            if output:
                parts.append("Output:\n" + output[:_MAX_OUTPUT_CHARS])
        body = "\n\n".join(part.strip("\n") for part in parts if part.strip())
        if body.strip():
            units.append(TextUnit(body, {**metadata, "cell": number, "cell_type": kind}))
    return units


def _cells(notebook: Any) -> list[Any] | None:
    if not isinstance(notebook, dict):
        return None
    if isinstance(notebook.get("cells"), list):
        return list(notebook["cells"])
    worksheets = notebook.get("worksheets")  # nbformat 3
    if isinstance(worksheets, list):
        return [cell for sheet in worksheets if isinstance(sheet, dict) for cell in sheet.get("cells") or ()]
    return None


def _joined(source: Any) -> str:
    if isinstance(source, list):
        return "".join(str(line) for line in source)
    return str(source) if source is not None else ""


def _output_text(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return _joined(output.get("text"))
    if kind in ("execute_result", "display_data", "pyout"):
        data = output.get("data") or {}
        return _joined(data.get("text/plain") if isinstance(data, dict) else None) or _joined(
            output.get("text")
        )
    if kind in ("error", "pyerr"):
        return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
    return ""
