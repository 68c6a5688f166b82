"""The contracts between document pipeline stages: changes from sources, parsed units, chunks, and the
protocols each stage implements (``Parser``, ``Splitter``, ``Embedder``, ``VectorIndex``)."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ChangeKind",
    "Chunk",
    "DocumentChange",
    "DocumentSource",
    "Embedder",
    "EmitChanges",
    "Hit",
    "Parser",
    "Splitter",
    "TextUnit",
    "VectorIndex",
    "VectorRecord",
]

Metadata = Mapping[str, Any]


class ChangeKind(enum.Enum):
    """What happened to a document at its source."""

    UPSERT = "upsert"
    """The document was created or its content/metadata changed; ``data`` holds the whole new content."""
    DELETE = "delete"
    """The document is gone; ``data`` is ``None``."""


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """One document-level change a source reports.

    ``doc_id`` is stable for the life of the document at its source (a folder source uses the path
    relative to its root). ``position`` is opaque to everyone but the source that made it: the source's
    state right after this change, saved in checkpoints. ``error`` is set (and ``data`` is ``None``) when
    the source saw the document but could not read it (too big, permission denied...): the pipeline
    records it as the document's error instead of indexing it.
    """

    doc_id: str
    kind: ChangeKind
    data: bytes | None = None
    metadata: Metadata = field(default_factory=dict)
    position: Any = None
    error: str | None = None


EmitChanges = Callable[..., None]
"""``emit(changes: list[DocumentChange], snapshot_done: bool = False)``: one atomic group."""


@runtime_checkable
class DocumentSource(Protocol):
    """A source of document changes (folder, S3, Kafka...), run in its own thread by the engine.

    ``run`` first emits the current state (every document as an UPSERT; when started from a saved
    ``position``, only what changed since, including DELETEs), calls ``emit([], snapshot_done=True)`` once
    that initial state is complete, and then, in ``"streaming"`` mode, keeps emitting live changes until
    ``stop`` is set, and returns. In ``"static"`` mode it returns right after the snapshot. Each ``emit``
    call is one atomic group of changes (an atomic save, a directory move). ``run`` must not raise for a
    single bad document: that becomes a ``DocumentChange`` with ``error`` set.
    """

    name: str

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class TextUnit:
    """A piece of parsed text (a whole text file, one PDF page) with its metadata."""

    text: str
    metadata: Metadata = field(default_factory=dict)


class Parser(Protocol):
    """Bytes + metadata -> text units. Raises ``ParseError`` with a message naming what is wrong."""

    def parse(self, data: bytes, metadata: Metadata) -> list[TextUnit]: ...


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a text unit small enough to embed: ``text == unit.text[start:end]``."""

    text: str
    start: int
    end: int
    ordinal: int
    n_tokens: int


class Splitter(Protocol):
    """Text -> chunks that each fit the embedder's input window."""

    def split(self, text: str) -> list[Chunk]: ...


class Embedder(Protocol):
    """Texts -> L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """How many tokens (of the splitter's tokenizer) a chunk may hold without being truncated."""
        ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One chunk to store in an index: ``id`` is a stable 63-bit integer chunk id.

    ``metadata`` is the document's metadata, what filters see; pass the same object for every chunk of a
    document so an index can evaluate a filter once per document. ``extra`` holds the chunk's own fields
    (offsets, page number), returned in hits merged over ``metadata`` but not filtered on.
    """

    id: int
    vector: npt.NDArray[np.float32]
    text: str
    metadata: Metadata
    extra: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: ``dist`` is the cosine distance (1 - cosine similarity), smaller is closer."""

    id: int
    text: str
    metadata: Metadata
    dist: float


class VectorIndex(Protocol):
    """A vector index that applies each epoch's changes atomically with respect to readers."""

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None: ...

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        filter: Callable[[Metadata], bool] | None = None,
    ) -> list[Hit]: ...

    def count(self) -> int: ...

    def save(self, path: str) -> None: ...

    def load(self, path: str) -> None: ...
