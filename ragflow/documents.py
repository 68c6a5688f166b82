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
    """A vector index that applies each epoch's changes atomically with respect to readers.

    ``tests/indexers/contract.py`` checks this contract for any index (see docs/indexes.md). Errors
    are ``IndexStoreError``.
    """

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None:
        """Delete then upsert, as one step: a concurrent :meth:`search` sees all of it or none of it, and
        an apply that raises (a vector of the wrong dimension, say) changes nothing.

        An upsert of a stored id replaces that chunk; of several upserts of one id the last wins; an id
        both deleted and upserted ends up stored with the upsert's content; deleting an id that is not
        stored does nothing.
        """
        ...

    def search(
        self,
        vector: npt.NDArray[np.float32],
        k: int,
        filter: Callable[[Metadata], bool] | None = None,
    ) -> list[Hit]:
        """The ``k`` stored chunks nearest ``vector`` among those whose ``metadata`` ``filter`` accepts,
        by ascending cosine distance (whatever the vectors' scale); fewer only when fewer are accepted,
        none when ``k <= 0``.

        The filter is applied inside the search, never to a top-k found without it, so rare matches
        still fill ``k``. It sees a record's ``metadata``, not its ``extra``; a hit's metadata is
        ``metadata`` with ``extra`` merged over it. The store passes a
        :class:`~ragflow.filters.MetadataFilter` (hashable, with its ``expression`` and
        ``glob_pattern``), which an external index may translate into its own query language.
        """
        ...

    def count(self) -> int:
        """The number of stored chunks."""
        ...

    def save(self, path: str) -> None:
        """Write the current contents so that :meth:`load` of ``path`` brings them back."""
        ...

    def load(self, path: str) -> None:
        """Replace the contents with those saved at ``path``, atomically for readers; when nothing
        loadable is there, raise ``IndexStoreError`` and keep the contents."""
        ...
