"""What a checkpoint is made of, and the errors of a state directory: the values that the state file, the
checkpointer and the store pass between them.

RagflowError
└── ConfigError
    └── StateError                   the state directory cannot be used as it is
        └── IncompatibleStateError   the state was written for another model, parser/splitter or format
DamagedState                         (internal) the state file cannot be trusted: it is set aside and rebuilt
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from ..pipeline import ParsedDoc
from ..sources import PositionScope

FORMAT_VERSION = 1
"""Bumped whenever what ``state.sqlite`` holds changes meaning; an older or newer file is incompatible."""
STATE_FILE = "state.sqlite"
CACHE_FILE = "embeddings.sqlite"

OnIncompatible = Literal["refuse", "rebuild", "migrate"]
"""``migrate`` is ``ragflow serve``'s (``MigratingStore``): a ``DocumentStore`` alone refuses or rebuilds."""


class StateError(ConfigError):
    """The state directory cannot be used: in use by another store, unreadable, or incompatible."""


class IncompatibleStateError(StateError):
    """The state directory was written for another embedding model, parser/splitter or format version."""


class DamagedState(Exception):
    """The state file cannot be trusted (set aside and rebuilt)."""


@dataclass(frozen=True, slots=True)
class StateIdentity:
    """What saved documents are only valid for: the same chunks under another splitter, or vectors of
    another model, would make a wrong index."""

    model_id: str
    dim: int
    parser_id: str

    def meta(self) -> dict[str, str]:
        return {
            "format_version": str(FORMAT_VERSION),
            "model_id": self.model_id,
            "dim": str(self.dim),
            "parser_id": self.parser_id,
        }


@dataclass(frozen=True, slots=True)
class SavedDocument:
    """A document as a checkpoint keeps it: its row (no bytes; with its source and position) and parse
    result, and when it became searchable."""

    doc: ParsedDoc
    indexed_at: float | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source's saved position, for sources whose positions are cumulative (``"stream"`` scope)."""

    scope: PositionScope
    position: Any = None


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    seq: int
    epoch: int
    written_at: float
    documents: int
    chunks: int


@dataclass
class SavedState:
    """What ``open_state`` found: the documents and source positions of the last checkpoint."""

    documents: list[SavedDocument] = field(default_factory=list)
    sources: dict[str, SourceState] = field(default_factory=dict)
    last_checkpoint: CheckpointInfo | None = None


@dataclass
class CheckpointBatch:
    """Changes not yet written: the newest value per document (``None``: deleted) and per source
    (``None``: forget it) wins."""

    epoch: int = 0
    documents: dict[str, SavedDocument | None] = field(default_factory=dict)
    sources: dict[str, SourceState | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.documents or self.sources)

    def update(self, newer: CheckpointBatch) -> None:
        self.epoch = max(self.epoch, newer.epoch)
        self.documents.update(newer.documents)
        self.sources.update(newer.sources)
