"""``FaissIndex``: the composition of block storage, metadata groups, transactions, the index file,
search and HNSW graph building into one :class:`~ragflow.documents.VectorIndex`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from ragflow.documents import Hit, VectorRecord
from ragflow.errors import ConfigError, IndexStoreError

from ._blocks import ROW_MASK, Block, Snapshot
from ._files import load_snapshot, save_snapshot
from ._graphs import GraphBuilder
from ._groups import MetadataGroups
from ._search import FilterMatches, Predicate, search_snapshot
from ._transactions import BlockWriter, Transaction, checked_id, prepare_upserts


@dataclass(frozen=True, slots=True)
class IndexStats:
    """Sizes of a :class:`FaissIndex`, for statistics endpoints and benchmarks."""

    count: int
    """Live chunks."""
    rows: int
    """Stored rows, dead ones (tombstones awaiting compaction) included."""
    blocks: int
    groups: int
    """Distinct metadata values among live chunks."""
    graphs_pending: int
    """Full blocks of an HNSW index still searched exactly while their graph is built."""
    memory_bytes: int
    """Vectors, ids, bitmaps and graphs; texts and metadata are not counted."""


class FaissIndex:
    """A :class:`~ragflow.documents.VectorIndex` on faiss: cosine distance, exact by default.

    Args:
        dim: the vectors' dimension.
        kind: ``"flat"`` for exact search, ``"hnsw"`` for approximate graph search on full blocks.
        hnsw_m: neighbours per HNSW node.
        ef_search: HNSW search breadth (raised to ``k`` when ``k`` is larger).
        ef_construction: HNSW build breadth.
        block_size: rows per block, a multiple of 8: the unit of compaction and of HNSW graphs.
        compact_fraction: rewrite a full block once more than this share of its rows is dead.
        background: build HNSW graphs in a background thread (else inside ``apply``).

    Vectors are L2-normalised on the way in, so ``dist`` is the cosine distance whatever the input
    scale. An apply is atomic for readers, deletes go before upserts (an id in both ends up present
    with the upsert's content), a later upsert of an id in the same apply wins, and deleting an
    unknown id does nothing. Returned metadata objects are shared with the index: do not mutate them.

    Design:
        Layout (``_blocks``). Vectors live in *blocks* of at most ``block_size`` rows, appended in order; a
        row's slot is ``block_number << 32 | row``. A block only ever grows at its end (the last block, the
        *tail*), so the rows a reader can see never change under it. Each block has a packed *live bitmap*;
        deleting a chunk (or upserting an id that exists) clears one bit, and searches pass the bitmap to
        faiss as an ``IDSelectorBitmap``, so a deleted chunk is never returned and the top-k are still k
        live chunks.

        Atomicity (``_transactions``). Everything a search reads is an immutable snapshot (block views with
        their bitmaps). ``apply`` copies the few bitmaps it touches (8 KiB each at the default block size),
        writes new rows past every published view's end, and publishes a new snapshot with one reference
        swap: searches never lock, never block one another and never see half of an apply.

        Compaction (``_transactions``). When more than ``compact_fraction`` of a full block is dead, its live
        rows are appended to the tail and the block is dropped, in the same apply. That costs
        O(block_size), never O(index), and readers holding older snapshots keep the old block until they
        finish.

        HNSW (``_graphs``, ``_search``). With ``kind="hnsw"`` every full block gets its own HNSW graph,
        built in a background thread (or inline with ``background=False``); until then, and for the tail,
        the block is searched exactly. Deletes and filters use the same bitmaps as selectors; when a
        selector leaves too few rows for a graph search to find k of them, that block is searched exactly.

        Filters (``_groups``, ``_search``). Chunks are grouped by their (interned) metadata, so a predicate
        runs once per distinct metadata, not per chunk; what a :class:`~ragflow.filters.MetadataFilter`
        matched is cached per group.
    """

    def __init__(
        self,
        dim: int,
        kind: Literal["flat", "hnsw"] = "flat",
        hnsw_m: int = 32,
        ef_search: int = 64,
        ef_construction: int = 80,
        block_size: int = 65536,
        compact_fraction: float = 0.2,
        background: bool = True,
    ) -> None:
        if dim <= 0:
            raise ConfigError(f"FaissIndex dim must be positive, got {dim}")
        if kind not in ("flat", "hnsw"):
            raise ConfigError(f"FaissIndex kind must be 'flat' or 'hnsw', got {kind!r}")
        if block_size < 8 or block_size % 8 or block_size > ROW_MASK:
            raise ConfigError(f"FaissIndex block_size must be a positive multiple of 8, got {block_size}")
        if not 0 < compact_fraction < 1:
            raise ConfigError(f"FaissIndex compact_fraction must be in (0, 1), got {compact_fraction}")
        if min(hnsw_m, ef_search, ef_construction) <= 0:
            raise ConfigError("FaissIndex hnsw_m, ef_search and ef_construction must be positive")
        self.dim = dim
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.block_size = block_size
        self.compact_fraction = compact_fraction
        self.background = background
        self._write_lock = threading.Lock()
        # Writer state, guarded by _write_lock; searches read only self._snapshot.
        self._writer = BlockWriter(dim, block_size, compact_fraction)
        self._groups = MetadataGroups()
        self._matches = FilterMatches()
        self._graphs = GraphBuilder(dim, hnsw_m, ef_construction, background, self._is_stored)
        self._snapshot = Snapshot((), self._groups.values, 0, 0)

    # ----------------------------------------------------------------------------------- writes

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None:
        """Delete then upsert, visible to searches all at once.

        Raises:
            IndexStoreError: a vector has the wrong size, is zero or not finite, or an id does not fit
                in 64 bits; nothing is applied then.
        """
        prepared = prepare_upserts(upserts, self.dim)
        delete_ids = [checked_id(i) for i in deletes]
        with self._write_lock:
            writer, groups = self._writer, self._groups
            txn = Transaction(self._snapshot.views)
            groups.drop(writer.kill(txn, delete_ids))
            if len(prepared.ids):
                groups.drop(writer.kill(txn, prepared.ids.tolist()))
                gids = groups.intern(prepared.keys, prepared.metadata)
                writer.append(txn, prepared.vectors, prepared.ids, gids, prepared.texts)
            writer.compact(txn)
            groups.release_dead()
            self._snapshot = txn.commit(groups.values)
            if self.kind == "hnsw":
                for block in txn.sealed:
                    self._graphs.schedule(block)

    def wait_for_graphs(self) -> None:
        """Block until every HNSW graph scheduled so far is built."""
        self._graphs.wait()

    def close(self) -> None:
        """Stop the background builder; the index stays searchable (exactly, where graphs are missing)."""
        self._graphs.close()

    def _is_stored(self, block: Block) -> bool:
        return any(view.block is block for view in self._snapshot.views)

    # ------------------------------------------------------------------------------------ reads

    def count(self) -> int:
        """Live chunks."""
        return self._snapshot.count

    def search(self, vector: npt.NDArray[np.float32], k: int, filter: Predicate | None = None) -> list[Hit]:
        """The ``k`` live chunks nearest ``vector`` among those whose metadata ``filter`` accepts,
        by ascending cosine distance (ties by id)."""
        query = np.asarray(vector, dtype=np.float32)
        if query.size != self.dim:
            raise IndexStoreError(
                f"query vector has shape {query.shape}, this index holds {self.dim}-d vectors"
            )
        return self.search_batch(query.reshape(1, self.dim), k, filter)[0]

    def search_batch(
        self, vectors: npt.NDArray[np.float32], k: int, filter: Predicate | None = None
    ) -> list[list[Hit]]:
        """:meth:`search` for each row of ``vectors`` (shape ``(n, dim)``), with one filter evaluation."""
        queries = np.array(vectors, dtype=np.float32, ndmin=2)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise IndexStoreError(f"query vectors have shape {queries.shape}, expected (n, {self.dim})")
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        np.divide(queries, norms, out=queries, where=norms > 0)
        snapshot = self._snapshot
        if k <= 0 or snapshot.count == 0:
            return [[] for _ in queries]
        match = self._matches.of(snapshot, filter, self._groups.values) if filter is not None else None
        return search_snapshot(snapshot, queries, k, match, self.ef_search)

    def stats(self) -> IndexStats:
        """Sizes of the current contents."""
        snapshot = self._snapshot
        memory = 0
        for view in snapshot.views:
            block = view.block
            memory += block.vectors.nbytes + block.ids.nbytes + block.gids.nbytes + view.live.nbytes
            if block.hnsw is not None:
                # The graph stores its own copy of the vectors plus about 2*M neighbour ids per node.
                memory += block.vectors.nbytes + view.used * 2 * self.hnsw_m * 4
        return IndexStats(
            count=snapshot.count,
            rows=sum(v.used for v in snapshot.views),
            blocks=len(snapshot.views),
            groups=self._groups.live_groups(),
            graphs_pending=sum(
                1
                for v in snapshot.views
                if self.kind == "hnsw" and v.used == self.block_size and v.block.hnsw is None
            ),
            memory_bytes=memory,
        )

    # ------------------------------------------------------------------------------ persistence

    def save(self, path: str) -> None:
        """Write the current contents to one file, atomically (a reader of ``path`` sees old or new).

        The file is a pickle: load only files this index wrote.
        """
        save_snapshot(self._snapshot, self.dim, self.block_size, path)

    def load(self, path: str) -> None:
        """Replace the contents with those saved at ``path`` (atomically for readers).

        Raises:
            IndexStoreError: the file is missing, unreadable, not an index file, or holds vectors of
                another dimension.
        """
        writer = BlockWriter(self.dim, self.block_size, self.compact_fraction)
        snapshot, groups = load_snapshot(path, writer, keep_graphs=self.kind == "hnsw")
        with self._write_lock:
            self._writer, self._groups, self._snapshot = writer, groups, snapshot
            self._matches.clear()
            if self.kind == "hnsw":
                for view in snapshot.views:
                    if view.used == self.block_size and view.block.hnsw is None:
                        self._graphs.schedule(view.block)
