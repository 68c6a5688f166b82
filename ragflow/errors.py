"""The exception hierarchy every ragflow part raises from.

RagflowError
├── ConfigError        a wrong configuration value or key
├── SourceError        a source cannot read its system
├── ParseError         one document cannot be parsed (recorded per document)
│   └── IncompleteParse  part of a document cannot be parsed; the rest is indexed, the reason recorded
├── EmbedError         an embedder failed on a batch
├── IndexStoreError    a vector index operation failed (named to avoid the builtin IndexError)
│   └── StalePositionError  a shared index refused a commit: another process moved its positions
├── FilterError        a metadata filter or glob pattern is invalid
└── EngineError        a bug or misuse of the engine itself: fails loudly
    └── SchemaError    a row does not match its table's declared schema
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .documents import TextUnit

__all__ = [
    "ConfigError",
    "EmbedError",
    "EngineError",
    "FilterError",
    "IncompleteParse",
    "IndexStoreError",
    "LLMError",
    "ParseError",
    "RagflowError",
    "SchemaError",
    "SourceError",
    "StalePositionError",
]


class RagflowError(Exception):
    """Base of every error ragflow raises on purpose."""


class ConfigError(RagflowError):
    """A configuration key or value is wrong; the message names it and the allowed values."""


class SourceError(RagflowError):
    """A source cannot read from the system it watches."""


class ParseError(RagflowError):
    """A document cannot be turned into text; recorded for that document only."""


class IncompleteParse(ParseError):
    """Part of a document cannot be read (a scanned page without OCR, a sheet cut at a limit): ``units``
    holds what could be, which is indexed, and the message is recorded as the document's error."""

    def __init__(self, message: str, units: list[TextUnit]) -> None:
        super().__init__(message)
        self.units = units


class EmbedError(RagflowError):
    """An embedder could not embed a batch."""


class IndexStoreError(RagflowError):
    """A vector index operation failed."""


class StalePositionError(IndexStoreError):
    """A commit's positions did not start where the shared index's did: another process applied those
    messages (it owns the partition now). Nothing was applied; read the positions again and resume from
    them."""


class FilterError(RagflowError):
    """A metadata filter expression or a glob pattern is invalid."""


class LLMError(RagflowError):
    """The LLM failed, timed out or answered something that is not a chat completion; the message names
    its base URL and model. The REST API answers it with HTTP 502."""


class EngineError(RagflowError):
    """The engine was misused or hit a bug of its own: never swallowed."""


class SchemaError(EngineError):
    """A row does not match the schema declared for its table."""
