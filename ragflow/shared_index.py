"""The contract between ``ragflow worker`` and the index it fills: a ``SharedIndex`` written by several
processes, which commits a batch's chunks, its documents and the consumed partitions' new offsets in one
transaction. ``ragflow.indexers.pgvector`` is one; the worker finds it by its entry point name, never by
import (see docs/scaling.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .documents import Metadata, VectorRecord

__all__ = ["DocumentEntry", "PositionAdvance", "SharedIndex"]


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """A document as one epoch left it: its metadata, its number of chunks and its error, if any."""

    doc_id: str
    metadata: Metadata
    chunks: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PositionAdvance:
    """One partition's position moving from ``expected`` (``None``: never stored) to ``next_offset``."""

    group: str
    topic: str
    partition: int
    expected: int | None
    next_offset: int


@runtime_checkable
class SharedIndex(Protocol):
    """A vector index shared by several writers, whose commits carry the positions they cover."""

    @property
    def table(self) -> str:
        """Where the index lives, as logs and messages name it."""
        ...

    def commit(
        self,
        upserts: Iterable[VectorRecord],
        deletes: Iterable[int] = (),
        *,
        documents: Mapping[str, DocumentEntry | None] | None = None,
        positions: Sequence[PositionAdvance] = (),
    ) -> None:
        """Apply ``upserts`` and ``deletes``, replace the ``documents`` named (``None``: deleted, its chunks
        too) and move ``positions``, all in one transaction. Raises ``StalePositionError`` (nothing
        applied) when a position did not start at its ``expected`` offset, ``IndexStoreError`` when the
        store failed."""
        ...

    def positions(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """The next offset stored for each ``(topic, partition)`` of ``group``'s ``topics``."""
        ...

    def stored_vectors(self, doc_ids: Sequence[str]) -> dict[str, npt.NDArray[np.float32]]:
        """The vector of each chunk text already stored for ``doc_ids`` (whoever embedded it)."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...
