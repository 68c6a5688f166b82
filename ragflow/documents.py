"""The contracts between document pipeline stages: parsed units, chunks, and the protocols each stage
implements (``Parser``, ``Splitter``, ``Embedder``, ``VectorIndex``). The source contract lives in
``ragflow.sources``; its names are handed on here too, where the stages import them from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .sources import ChangeKind, DocumentChange, DocumentSource, EmitChanges

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
