"""The vector index and the lexical index as one: each epoch's chunk changes reach both at once, and a
hybrid search reads both at the same epoch (a reader never sees a chunk in one and not in the other).
A vector index that keeps the words itself (``LexicalVectorIndex``: pgvector's, in the same rows and
transactions as its vectors) serves the lexical side instead of a ``LexicalIndex`` beside it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..documents import Hit, Metadata, VectorIndex, VectorRecord

__all__ = ["LexicalSide", "LexicalVectorIndex", "SearchIndexes"]

T = TypeVar("T")

_OPTIMISTIC_READS = 3  # then a reader waits for the writer instead of retrying


@runtime_checkable
class LexicalVectorIndex(Protocol):
    """A vector index that also answers lexical searches, from words it writes in the same transaction
    as the vectors (``ragflow.indexers.pgvector``): a store keeps no lexical index beside it, and a hybrid
    search reads both rankings in one snapshot of it."""

    def lexical_search(
        self, query: str, k: int, filter: Callable[[Metadata], bool] | None = None
    ) -> list[Hit]: ...

    def hybrid_search(
        self,
        vector: npt.NDArray[np.float32],
        query: str,
        k: int,
        filter: Callable[[Metadata], bool] | None = None,
    ) -> tuple[list[Hit], list[Hit]]: ...


class LexicalSide(Protocol):
    """What ``SearchIndexes`` needs of a lexical index (``LexicalIndex`` is one)."""

    def applying(
        self, upserts: Iterable[VectorRecord], deletes: Iterable[int]
    ) -> AbstractContextManager[None]: ...

    def restore(self, records: Sequence[VectorRecord]) -> int: ...

    def search(self, query: str, k: int, filter: Callable[[Metadata], bool] | None = None) -> list[Hit]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


class _IndexedWords:
    """The lexical side of a ``LexicalVectorIndex``: its own apply writes the words, nothing to do here."""

    def __init__(self, index: LexicalVectorIndex, count: Callable[[], int]) -> None:
        self.index, self._count = index, count

    def applying(
        self, upserts: Iterable[VectorRecord], deletes: Iterable[int]
    ) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def restore(self, records: Sequence[VectorRecord]) -> int:
        return 0

    def search(self, query: str, k: int, filter: Callable[[Metadata], bool] | None = None) -> list[Hit]:
        return self.index.lexical_search(query, k, filter)

    def count(self) -> int:
        return self._count()

    def close(self) -> None:
        pass


class SearchIndexes:
    """A ``VectorIndex`` (what the pipeline's sink applies each epoch to) that applies every change to
    ``vector`` and, when there is one, ``lexical``: the lexical change is written first and committed
    only once the vector index took its part, so a failure on either side leaves both as they were.

    Readers use a sequence lock: ``consistent(read)`` runs ``read`` and keeps its result only if no
    apply began or ended meanwhile, so searches never wait on each other and rarely on an apply.
    """

    def __init__(self, vector: VectorIndex, lexical: LexicalSide | None = None) -> None:
        self.vector = vector
        self._hybrid = None
        if lexical is not None and isinstance(vector, LexicalVectorIndex):
            lexical.close()  # the vector index keeps the words, in its own transactions
            lexical, self._hybrid = _IndexedWords(vector, vector.count), vector.hybrid_search
        self.lexical = lexical
        self._writing = threading.Lock()
        self._sequence = 0  # odd while an apply is under way

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None:
        upserts, deletes = list(upserts), list(deletes)
        with self._writing:
            self._sequence += 1
            try:
                if self.lexical is None:
                    self.vector.apply(upserts, deletes)
                else:
                    with self.lexical.applying(upserts, deletes):
                        self.vector.apply(upserts, deletes)
            finally:
                self._sequence += 1

    def restore(self, records: Sequence[VectorRecord], batch: int) -> None:
        """Load a checkpoint's chunks: into the vector index ``batch`` at a time, and into the lexical
        index by reconciling its file (only changed chunks are tokenised)."""
        with self._writing:
            self._sequence += 1
            try:
                for start in range(0, len(records), batch):
                    self.vector.apply(records[start : start + batch], [])
                if self.lexical is not None:
                    self.lexical.restore(records)
            finally:
                self._sequence += 1

    def consistent(self, read: Callable[[], T]) -> T:
        """``read()`` as of one epoch of both indexes."""
        for _ in range(_OPTIMISTIC_READS):
            before = self._sequence
            if before % 2 == 0:
                result = read()
                if self._sequence == before:
                    return result
        with self._writing:
            return read()

    def search_both(
        self,
        vector: npt.NDArray[np.float32],
        query: str,
        k: int,
        filter: Callable[[Metadata], bool] | None = None,
    ) -> tuple[list[Hit], list[Hit]]:
        """The vector and the lexical search's ``k`` best hits, as of one epoch of both."""
        if self._hybrid is not None:
            return self._hybrid(vector, query, k, filter)
        lexical = self.lexical
        assert lexical is not None
        return self.consistent(
            lambda: (self.vector.search(vector, k, filter), lexical.search(query, k, filter))
        )

    # -- the rest of VectorIndex: the vector index's ------------------------------------------------

    def search(
        self, vector: npt.NDArray[np.float32], k: int, filter: Callable[[Metadata], bool] | None = None
    ) -> list[Hit]:
        return self.vector.search(vector, k, filter)

    def count(self) -> int:
        return self.vector.count()

    def save(self, path: str) -> None:
        self.vector.save(path)

    def load(self, path: str) -> None:
        self.vector.load(path)
