"""Shared helpers of the parser tests."""

from __future__ import annotations

from ragflow.documents import TextUnit
from ragflow.parsers import DefaultParser

PARSER = DefaultParser()


def parse(data: bytes, path: str, parser: DefaultParser = PARSER) -> list[TextUnit]:
    return parser.parse(data, {"path": path})


def located(units: list[TextUnit], *fields: str) -> list[tuple[object, ...]]:
    """Each unit's ``fields`` (None where absent)."""
    return [tuple(unit.metadata.get(name) for name in fields) for unit in units]
