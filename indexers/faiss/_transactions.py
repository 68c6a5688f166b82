"""How one apply changes the faiss index: upserts validated before the writer lock, copy-on-write drafts
of the block views it touches, the writer that kills, appends and compacts rows through them, and the
commit that turns them into the next snapshot."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ragflow.documents import VectorRecord
from ragflow.errors import IndexStoreError

from ._blocks import (
    INITIAL_TAIL_ROWS,
    ROW_BITS,
    ROW_MASK,
    BitArray,
    Block,
    BlockView,
    FloatArray,
    IntArray,
    Metadata,
    Rows,
    Snapshot,
    StoredText,
    clear_bits,
    live_rows,
    resized,
    set_bit_range,
)
from ._graph_files import new_stem
from ._groups import metadata_key

_NO_ROWS: IntArray = np.zeros(0, dtype=np.int64)
BoolArray = npt.NDArray[np.bool_]


class Draft:
    """The writer's private, mutable copy of a block view during one apply."""

    __slots__ = ("block", "live", "n_live", "used")

    def __init__(self, block: Block, used: int, live: BitArray, n_live: int) -> None:
        self.block, self.used, self.live, self.n_live = block, used, live, n_live

    def freeze(self) -> BlockView:
        return BlockView(self.block, self.used, self.live, self.n_live)


class Transaction:
    """The views one apply changes, copied on first touch and published together."""

    def __init__(self, views: Iterable[BlockView]) -> None:
        self.views: dict[int, BlockView | Draft] = {view.block.number: view for view in views}
        self.sealed: list[Block] = []
        """Blocks this apply filled up: they get their HNSW graph once committed."""

    def sealed_numbers(self) -> list[int]:
        return [block.number for block in self.sealed]

    def draft(self, number: int) -> Draft:
        current = self.views[number]
        if isinstance(current, Draft):
            return current
        draft = Draft(current.block, current.used, current.live.copy(), current.n_live)
        self.views[number] = draft
        return draft

    def commit(self, groups: list[Metadata | None]) -> Snapshot:
        """The snapshot holding this transaction's views; publishing it is one reference swap."""
        views = tuple(v.freeze() if isinstance(v, Draft) else v for v in self.views.values())
        return Snapshot(views, groups, len(groups), sum(v.n_live for v in views))


@dataclass(frozen=True, slots=True)
class Prepared:
    """Validated upserts, ready to write: computed before taking the writer lock."""

    ids: IntArray
    vectors: FloatArray
    texts: list[StoredText]
    metadata: list[Metadata]
    keys: list[Hashable]


def prepare_upserts(upserts: Iterable[VectorRecord], dim: int) -> Prepared:
    """The last upsert of each id, with L2-normalised vectors and metadata keys.

    Raises:
        IndexStoreError: a vector has the wrong size, is zero or not finite, or an id does not fit in
            64 bits.
    """
    latest: dict[int, VectorRecord] = {}
    for record in upserts:
        latest[checked_id(record.id)] = record
    records = list(latest.values())
    vectors = np.empty((len(records), dim), dtype=np.float32)
    for row, record in enumerate(records):
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.size != dim:
            raise IndexStoreError(
                f"chunk {record.id}: vector has shape {vector.shape}, expected {dim} values"
            )
        vectors[row] = vector.reshape(-1)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))  # no n-by-dim temporary, unlike linalg.norm
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        raise IndexStoreError(
            f"chunk {records[int(np.argmax(bad))].id}: vector is zero or not finite; cannot index it"
        )
    vectors /= norms[:, None]
    keys: dict[int, Hashable] = {}
    for record in records:
        if id(record.metadata) not in keys:
            keys[id(record.metadata)] = metadata_key(record.metadata)
    return Prepared(
        ids=np.fromiter(latest, dtype=np.int64, count=len(records)),
        vectors=vectors,
        texts=[(record.text, record.extra) if record.extra else record.text for record in records],
        metadata=[record.metadata for record in records],
        keys=[keys[id(record.metadata)] for record in records],
    )


def checked_id(value: int) -> int:
    chunk_id = int(value)
    if not -(1 << 63) <= chunk_id < 1 << 63:
        raise IndexStoreError(f"chunk id {chunk_id} does not fit in a signed 64-bit integer")
    return chunk_id


class BlockWriter:
    """Where rows go: appended at the end of the tail block, killed by clearing their live bit, moved to
    the tail when their block is mostly dead. Holds the writer's map of chunk id to slot."""

    def __init__(self, dim: int, block_size: int, compact_fraction: float) -> None:
        self.dim = dim
        self.block_size = block_size
        self.compact_fraction = compact_fraction
        self._id_to_slot: dict[int, int] = {}
        self._dormant: dict[int, int] = {}
        self._next_block = 0

    def kill(self, txn: Transaction, ids: Iterable[int]) -> IntArray:
        """Clear the live bits of the given chunk ids (those present) and drop them from the id map.

        Returns:
            The group id of each killed row, for the groups' live counts.
        """
        rows_by_block: dict[int, list[int]] = {}
        for chunk_id in ids:
            slot = self._id_to_slot.pop(chunk_id, None)
            if slot is not None:
                rows_by_block.setdefault(slot >> ROW_BITS, []).append(slot & ROW_MASK)
        killed: list[IntArray] = []
        for number, row_list in rows_by_block.items():
            draft = txn.draft(number)
            rows = np.asarray(row_list, dtype=np.int64)
            clear_bits(draft.live, rows)
            draft.n_live -= len(rows)
            killed.append(draft.block.gids[rows])
        if len(killed) == 1:
            return killed[0]
        return np.concatenate(killed) if killed else _NO_ROWS

    def append(
        self,
        txn: Transaction,
        vectors: FloatArray,
        ids: IntArray,
        gids: IntArray,
        texts: Sequence[StoredText],
    ) -> None:
        """Write rows at the end of the tail block, growing it or starting new blocks as needed."""
        start = 0
        while start < len(ids):
            draft = self._tail(txn)
            block, used = draft.block, draft.used
            take = min(block.capacity - used, len(ids) - start)
            assert isinstance(block.vectors, np.ndarray)  # the tail's rows are in memory
            block.vectors[used : used + take] = vectors[start : start + take]
            block.ids[used : used + take] = ids[start : start + take]
            block.gids[used : used + take] = gids[start : start + take]
            block.texts.extend(texts[start : start + take])
            set_bit_range(draft.live, used, used + take)
            base = (block.number << ROW_BITS) + used
            self._id_to_slot.update(
                zip(ids[start : start + take].tolist(), range(base, base + take), strict=True)
            )
            draft.used += take
            draft.n_live += take
            if draft.used == self.block_size:
                block.stem = new_stem()  # the name of its files (rows on disk, saved graph), if it gets any
                txn.sealed.append(block)
            start += take

    def compact(self, txn: Transaction) -> None:
        """Move the live rows of every touched full block that is mostly dead to the tail (not while dormant
        rows wait to be revived: their blocks look dead until then)."""
        if self._dormant:
            return
        for view in list(txn.views.values()):
            if (
                isinstance(view, Draft)
                and view.used == self.block_size
                and view.used - view.n_live > self.compact_fraction * view.used
            ):
                self._relocate(txn, view)

    def new_block(self, txn: Transaction, capacity: int) -> Draft:
        """An empty block of ``capacity`` rows, numbered after every other, as a draft in ``txn``."""
        number = self._next_block
        self._next_block += 1
        block = Block(
            number,
            np.empty((capacity, self.dim), dtype=np.float32),
            np.empty(capacity, dtype=np.int64),
            np.empty(capacity, dtype=np.int64),
            [],
        )
        draft = Draft(block, 0, np.zeros(capacity // 8, dtype=np.uint8), 0)
        txn.views[number] = draft
        return draft

    def register(self, block: Block, rows: IntArray) -> None:
        """Map the chunk ids at ``rows`` of ``block`` to their slots (rows written other than by append)."""
        base = block.number << ROW_BITS
        self._id_to_slot.update(zip(block.ids[rows].tolist(), (base + rows).tolist(), strict=True))

    @property
    def dormant(self) -> int:
        """Rows of adopted graph files not revived yet."""
        return len(self._dormant)

    def adopt(
        self, txn: Transaction, ids: IntArray, vectors: Rows, graph: Any, codes: Any, stem: str
    ) -> None:
        """A full block from a graph file, every row dormant (dead) until :meth:`revive` brings it back."""
        number = self._next_block
        self._next_block += 1
        rows = len(ids)
        block = Block(number, vectors, ids, np.zeros(rows, dtype=np.int64), [""] * rows, graph, codes, stem)
        txn.views[number] = Draft(block, rows, np.zeros(rows // 8, dtype=np.uint8), 0)
        base = number << ROW_BITS
        self._dormant.update(zip(ids.tolist(), range(base, base + rows), strict=True))

    def revive(
        self,
        txn: Transaction,
        vectors: FloatArray,
        ids: IntArray,
        gids: IntArray,
        texts: Sequence[StoredText],
    ) -> BoolArray | None:
        """Bring back dormant rows that upserts give the same id and the very same vector, in place (their
        block's graph stays valid). A dormant row is written at most once and was never visible before,
        so no published snapshot sees it change.

        Returns:
            Which upserts were revived (None: none), the others to be appended.
        """
        if not self._dormant:
            return None
        slots = np.fromiter((self._dormant.pop(i, -1) for i in ids.tolist()), dtype=np.int64, count=len(ids))
        hits = np.flatnonzero(slots >= 0)
        if not len(hits):
            return None
        revived = np.zeros(len(ids), dtype=np.bool_)
        numbers = slots[hits] >> ROW_BITS
        for number in np.unique(numbers).tolist():
            if number not in txn.views:
                continue  # its block is gone (adoption had ended): those upserts are appended
            mine = hits[numbers == number]
            rows = slots[mine] & ROW_MASK
            draft = txn.draft(number)
            block = draft.block
            same = np.all(np.asarray(block.vectors[rows]) == vectors[mine], axis=1)
            mine, rows = mine[same], rows[same]
            block.gids[rows] = gids[mine]
            for upsert, row in zip(mine.tolist(), rows.tolist(), strict=True):
                block.texts[row] = texts[upsert]
            np.bitwise_or.at(draft.live, rows >> 3, np.left_shift(1, rows & 7).astype(np.uint8))
            draft.n_live += len(rows)
            self.register(block, rows)
            revived[mine] = True
        return revived if revived.any() else None

    def end_adoption(self, txn: Transaction) -> None:
        """Forget the dormant rows not revived and mark their mostly dead blocks for compaction."""
        self._dormant.clear()
        for number, view in list(txn.views.items()):
            if view.used == self.block_size and view.used - view.n_live > self.compact_fraction * view.used:
                txn.draft(number)

    def _tail(self, txn: Transaction) -> Draft:
        """The draft of the block to append to, with room for at least one row."""
        last = next(reversed(txn.views.values()), None)
        if last is None or last.used == self.block_size:
            return self.new_block(txn, min(self.block_size, INITIAL_TAIL_ROWS))
        draft = txn.draft(last.block.number)
        if draft.used < draft.block.capacity:
            return draft
        if draft.used - draft.n_live > self.compact_fraction * draft.used:
            # Mostly churn: rewriting the live rows bounds a small index's memory by its live size.
            self._relocate(txn, draft)
            return self._tail(txn)
        block = draft.block
        assert isinstance(block.vectors, np.ndarray)  # not full: in memory
        capacity = min(self.block_size, 2 * block.capacity)
        grown = Block(
            block.number,
            resized(block.vectors, capacity),
            resized(block.ids, capacity),
            resized(block.gids, capacity),
            # Shared on purpose: older views read only their first `used` texts, which never change.
            block.texts,
            # The graph covers rows that never change either.
            block.hnsw,
            block.codes,
        )
        live = np.zeros(capacity // 8, dtype=np.uint8)
        live[: len(draft.live)] = draft.live
        draft.block, draft.live = grown, live
        return draft

    def _relocate(self, txn: Transaction, draft: Draft) -> None:
        """Move a block's live rows to the tail and drop the block."""
        block = draft.block
        rows = live_rows(draft.live, draft.used)
        del txn.views[block.number]
        self.append(
            txn,
            block.vectors[rows],
            block.ids[rows],
            block.gids[rows],
            [block.texts[r] for r in rows.tolist()],
        )
