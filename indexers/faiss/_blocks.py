"""Block storage of the faiss index: rows in blocks, each with a packed live bitmap, and the immutable
views and snapshots through which searches read them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ._compact import DiskRows

Metadata = Mapping[str, Any]
StoredText = str | tuple[str, Metadata]
"""A row's text, with its chunk-level metadata when it has any."""
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BitArray = npt.NDArray[np.uint8]
Rows: TypeAlias = "FloatArray | DiskRows"
"""A block's float32 rows: in memory, or on disk for a full compact block."""

ROW_BITS = 32
"""A row's slot is ``block_number << ROW_BITS | row``."""
ROW_MASK = (1 << ROW_BITS) - 1
INITIAL_TAIL_ROWS = 1024
"""Capacity of a new tail block; it doubles up to the block size as rows arrive."""
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


@dataclass(eq=False)
class Block:
    """The rows of one block. Rows below any published view's ``used`` are never written again."""

    number: int
    vectors: Rows
    """The rows, in memory; a full compact block's are on disk (``DiskRows``), read when needed."""
    ids: IntArray
    gids: IntArray
    texts: list[StoredText]
    hnsw: Any = None
    """An HNSW graph over all rows (``IndexHNSWFlat``, or ``IndexHNSWSQ`` over compact codes), set once
    when the block is full and its graph is built."""
    codes: Any = None
    """Set with a graph over compact codes: the graph's ``IndexScalarQuantizer`` storage; candidates it
    finds are re-ranked with ``vectors``, which for a full compact block are on disk."""
    stem: str | None = None
    """The name (without suffix) of this full block's files: its compact rows, its saved graph (given
    when the block fills, or is loaded or adopted full)."""

    @property
    def capacity(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class BlockView:
    """A block as one snapshot sees it: its first ``used`` rows, ``live`` bit set for the visible ones."""

    block: Block
    used: int
    live: BitArray
    n_live: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a search reads; replaced, never mutated, by each apply."""

    views: tuple[BlockView, ...]
    groups: list[Metadata | None]
    """Metadata of each group id, shared and append-only; ``None`` once a dead group is released."""
    n_groups: int
    count: int


def ceil8(n: int) -> int:
    return (n + 7) // 8 * 8


def resized(array: npt.NDArray[Any], capacity: int) -> npt.NDArray[Any]:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def set_bit_range(bitmap: BitArray, start: int, stop: int) -> None:
    """Set bits ``start..stop-1`` of a little-endian packed bitmap."""
    if start >= stop:
        return
    first, last = start >> 3, (stop - 1) >> 3
    if first == last:
        bitmap[first] |= ((1 << (stop - start)) - 1) << (start & 7)
        return
    bitmap[first] |= (0xFF << (start & 7)) & 0xFF
    bitmap[first + 1 : last] = 0xFF
    bitmap[last] |= (1 << (((stop - 1) & 7) + 1)) - 1


def clear_bits(bitmap: BitArray, rows: IntArray) -> None:
    """Clear the bits of ``rows`` in a little-endian packed bitmap."""
    np.bitwise_and.at(bitmap, rows >> 3, ~(np.left_shift(1, rows & 7)).astype(np.uint8))


def count_bits(bitmap: BitArray) -> int:
    return int(_POPCOUNT[bitmap].sum())


def live_rows(bitmap: BitArray, used: int) -> IntArray:
    return np.flatnonzero(np.unpackbits(bitmap, count=used, bitorder="little")).astype(np.int64)
