"""The vector index and the lexical index as one: each epoch's chunk changes reach both at once, and a
hybrid search reads both at the same epoch (a reader never sees a chunk in one and not in the other)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from ..documents import Hit, Metadata, VectorIndex, VectorRecord
from .lexical import LexicalIndex

__all__ = ["SearchIndexes"]

T = TypeVar("T")

_OPTIMISTIC_READS = 3  # then a reader waits for the writer instead of retrying


class SearchIndexes:
    """A ``VectorIndex`` (what the pipeline's sink applies each epoch to) that applies every change to
    ``vector`` and, when there is one, ``lexical``: the lexical change is written first and committed
    only once the vector index took its part, so a failure on either side leaves both as they were.

    Readers use a sequence lock: ``consistent(read)`` runs ``read`` and keeps its result only if no
    apply began or ended meanwhile, so searches never wait on each other and rarely on an apply.
    """

    def __init__(self, vector: VectorIndex, lexical: LexicalIndex | None = None) -> None:
        self.vector = vector
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
