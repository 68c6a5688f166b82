"""The embedded default vector index: exact (or HNSW) cosine search on faiss with epoch-atomic applies,
constant-cost deletes and metadata filters evaluated inside the search."""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from ragflow.documents import Hit, VectorRecord
from ragflow.errors import ConfigError, IndexStoreError
from ragflow.filters import MetadataFilter

__all__ = ["FaissIndex", "IndexStats"]

_log = logging.getLogger(__name__)

# Batched faiss searches are 7-9x faster with BLAS from 20 queries on (measured, ENVIRONMENT.md).
faiss.cvar.distance_compute_blas_threshold = 20

Metadata = Mapping[str, Any]
Predicate = Callable[[Metadata], bool]
StoredText = str | tuple[str, Metadata]
"""A row's text, with its chunk-level metadata when it has any."""
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BitArray = npt.NDArray[np.uint8]

_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
_FORMAT = "ragflow-faiss/1"
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
_MATCH_CACHE_SIZE = 64
_INITIAL_TAIL_ROWS = 1024
# Below this share of allowed rows, gathering them and scoring exactly beats scanning a whole block.
_GATHER_FRACTION = 1 / 32
# Below this share of allowed rows, an HNSW graph search with a selector wanders and comes back short.
_GRAPH_MIN_FRACTION = 0.2


@dataclass(eq=False)
class _Block:
    """The rows of one block. Rows below any published view's ``used`` are never written again."""

    number: int
    vectors: FloatArray
    ids: IntArray
    gids: IntArray
    texts: list[StoredText]
    hnsw: Any = None
    """An ``IndexHNSWFlat`` over all rows, set once when the block is full and its graph is built."""

    @property
    def capacity(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class _BlockView:
    """A block as one snapshot sees it: its first ``used`` rows, ``live`` bit set for the visible ones."""

    block: _Block
    used: int
    live: BitArray
    n_live: int


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Everything a search reads; replaced, never mutated, by each apply."""

    views: tuple[_BlockView, ...]
    groups: list[Metadata | None]
    """Metadata of each group id, shared and append-only; ``None`` once a dead group is released."""
    n_groups: int
    count: int


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


class _Draft:
    """The writer's private, mutable copy of a block view during one apply."""

    __slots__ = ("block", "live", "n_live", "used")

    def __init__(self, block: _Block, used: int, live: BitArray, n_live: int) -> None:
        self.block, self.used, self.live, self.n_live = block, used, live, n_live

    def freeze(self) -> _BlockView:
        return _BlockView(self.block, self.used, self.live, self.n_live)


class _Transaction:
    """The views one apply changes, copied on first touch and published together."""

    def __init__(self, views: Iterable[_BlockView]) -> None:
        self.views: dict[int, _BlockView | _Draft] = {view.block.number: view for view in views}
        self.sealed: list[_Block] = []

    def draft(self, number: int) -> _Draft:
        current = self.views[number]
        if isinstance(current, _Draft):
            return current
        draft = _Draft(current.block, current.used, current.live.copy(), current.n_live)
        self.views[number] = draft
        return draft

    def freeze(self) -> tuple[_BlockView, ...]:
        return tuple(v.freeze() if isinstance(v, _Draft) else v for v in self.views.values())


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Validated upserts, ready to write: computed before taking the writer lock."""

    ids: IntArray
    vectors: FloatArray
    texts: list[StoredText]
    metadata: list[Metadata]
    keys: list[Hashable]


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
        Layout. Vectors live in *blocks* of at most ``block_size`` rows, appended in order; a row's slot is
        ``block_number << 32 | row``. A block only ever grows at its end (the last block, the *tail*), so the
        rows a reader can see never change under it. Each block has a packed *live bitmap*; deleting a chunk
        (or upserting an id that exists) clears one bit, and searches pass the bitmap to faiss as an
        ``IDSelectorBitmap``, so a deleted chunk is never returned and the top-k are still k live chunks.

        Atomicity. Everything a search reads is an immutable :class:`_Snapshot` (block views with their
        bitmaps). ``apply`` copies the few bitmaps it touches (8 KiB each at the default block size), writes
        new rows past every published view's end, and publishes a new snapshot with one reference swap:
        searches never lock, never block one another and never see half of an apply.

        Compaction. When more than ``compact_fraction`` of a full block is dead, its live rows are appended
        to the tail and the block is dropped, in the same apply. That costs O(block_size), never O(index),
        and readers holding older snapshots keep the old block until they finish.

        HNSW. With ``kind="hnsw"`` every full block gets its own HNSW graph, built in a background thread
        (or inline with ``background=False``); until then, and for the tail, the block is searched exactly.
        Deletes and filters use the same bitmaps as selectors; when a selector leaves too few rows for a
        graph search to find k of them, that block is searched exactly.

        Filters. Chunks are grouped by their (interned) metadata, so a predicate runs once per distinct
        metadata, not per chunk; what a :class:`~ragflow.filters.MetadataFilter` matched is cached per group.
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
        if block_size < 8 or block_size % 8 or block_size > _ROW_MASK:
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
        self._builder: ThreadPoolExecutor | None = None
        self._match_cache: OrderedDict[
            MetadataFilter, tuple[list[Metadata | None], npt.NDArray[np.bool_]]
        ] = OrderedDict()
        self._match_lock = threading.Lock()
        # Writer state, guarded by _write_lock; searches read only self._snapshot.
        self._id_to_slot: dict[int, int] = {}
        self._groups: list[Metadata | None] = []
        self._group_keys: list[Hashable | None] = []
        self._group_of_key: dict[Hashable, int] = {}
        self._group_live = np.zeros(0, dtype=np.int64)
        self._dead_groups: set[int] = set()
        self._next_block = 0
        self._snapshot = _Snapshot((), self._groups, 0, 0)

    # ----------------------------------------------------------------------------------- writes

    def apply(self, upserts: Iterable[VectorRecord], deletes: Iterable[int]) -> None:
        """Delete then upsert, visible to searches all at once.

        Raises:
            IndexStoreError: a vector has the wrong size, is zero or not finite, or an id does not fit
                in 64 bits; nothing is applied then.
        """
        prepared = self._prepare(upserts)
        delete_ids = [_checked_id(i) for i in deletes]
        with self._write_lock:
            txn = _Transaction(self._snapshot.views)
            self._kill(txn, delete_ids)
            if len(prepared.ids):
                self._kill(txn, prepared.ids.tolist())
                gids = self._intern(prepared)
                self._append(txn, prepared.vectors, prepared.ids, gids, prepared.texts)
            self._compact(txn)
            self._release_dead_groups()
            self._publish(txn)

    def _prepare(self, upserts: Iterable[VectorRecord]) -> _Prepared:
        latest: dict[int, VectorRecord] = {}
        for record in upserts:
            latest[_checked_id(record.id)] = record
        records = list(latest.values())
        vectors = np.empty((len(records), self.dim), dtype=np.float32)
        for row, record in enumerate(records):
            vector = np.asarray(record.vector, dtype=np.float32)
            if vector.size != self.dim:
                raise IndexStoreError(
                    f"chunk {record.id}: vector has shape {vector.shape}, expected {self.dim} values"
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
                keys[id(record.metadata)] = _metadata_key(record.metadata)
        return _Prepared(
            ids=np.fromiter(latest, dtype=np.int64, count=len(records)),
            vectors=vectors,
            texts=[(record.text, record.extra) if record.extra else record.text for record in records],
            metadata=[record.metadata for record in records],
            keys=[keys[id(record.metadata)] for record in records],
        )

    def _kill(self, txn: _Transaction, ids: Iterable[int]) -> None:
        """Clear the live bits of the given chunk ids (those present) and drop them from the id map."""
        rows_by_block: dict[int, list[int]] = {}
        for chunk_id in ids:
            slot = self._id_to_slot.pop(chunk_id, None)
            if slot is not None:
                rows_by_block.setdefault(slot >> _ROW_BITS, []).append(slot & _ROW_MASK)
        for number, row_list in rows_by_block.items():
            draft = txn.draft(number)
            rows = np.asarray(row_list, dtype=np.int64)
            np.bitwise_and.at(draft.live, rows >> 3, ~(np.left_shift(1, rows & 7)).astype(np.uint8))
            draft.n_live -= len(rows)
            gids = draft.block.gids[rows]
            np.subtract.at(self._group_live, gids, 1)
            touched = np.unique(gids)
            self._dead_groups.update(touched[self._group_live[touched] == 0].tolist())

    def _intern(self, prepared: _Prepared) -> IntArray:
        """Group ids of the upserts' metadata, creating groups for values not seen before."""
        gids = np.empty(len(prepared.keys), dtype=np.int64)
        for row, (key, metadata) in enumerate(zip(prepared.keys, prepared.metadata, strict=True)):
            gid = self._group_of_key.get(key)
            if gid is None:
                gid = len(self._groups)
                self._group_of_key[key] = gid
                self._group_keys.append(key)
                # A private copy: the caller may reuse or mutate its dict after the apply.
                self._groups.append(dict(metadata))
            gids[row] = gid
        if len(self._groups) > len(self._group_live):
            grown = np.zeros(max(2 * len(self._group_live), len(self._groups), 1024), dtype=np.int64)
            grown[: len(self._group_live)] = self._group_live
            self._group_live = grown
        touched = np.unique(gids)
        self._dead_groups.difference_update(touched[self._group_live[touched] == 0].tolist())
        np.add.at(self._group_live, gids, 1)
        return gids

    def _append(
        self,
        txn: _Transaction,
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
            block.vectors[used : used + take] = vectors[start : start + take]
            block.ids[used : used + take] = ids[start : start + take]
            block.gids[used : used + take] = gids[start : start + take]
            block.texts.extend(texts[start : start + take])
            _set_bit_range(draft.live, used, used + take)
            base = (block.number << _ROW_BITS) + used
            self._id_to_slot.update(
                zip(ids[start : start + take].tolist(), range(base, base + take), strict=True)
            )
            draft.used += take
            draft.n_live += take
            if draft.used == self.block_size:
                txn.sealed.append(block)
            start += take

    def _tail(self, txn: _Transaction) -> _Draft:
        """The draft of the block to append to, with room for at least one row."""
        last = next(reversed(txn.views.values()), None)
        if last is None or last.used == self.block_size:
            return self._new_block(txn, min(self.block_size, _INITIAL_TAIL_ROWS))
        draft = txn.draft(last.block.number)
        if draft.used < draft.block.capacity:
            return draft
        if draft.used - draft.n_live > self.compact_fraction * draft.used:
            # Mostly churn: rewriting the live rows bounds a small index's memory by its live size.
            self._relocate(txn, draft)
            return self._tail(txn)
        block = draft.block
        capacity = min(self.block_size, 2 * block.capacity)
        grown = _Block(
            block.number,
            _resized(block.vectors, capacity),
            _resized(block.ids, capacity),
            _resized(block.gids, capacity),
            # Shared on purpose: older views read only their first `used` texts, which never change.
            block.texts,
        )
        live = np.zeros(capacity // 8, dtype=np.uint8)
        live[: len(draft.live)] = draft.live
        draft.block, draft.live = grown, live
        return draft

    def _new_block(self, txn: _Transaction, capacity: int) -> _Draft:
        number = self._next_block
        self._next_block += 1
        block = _Block(
            number,
            np.empty((capacity, self.dim), dtype=np.float32),
            np.empty(capacity, dtype=np.int64),
            np.empty(capacity, dtype=np.int64),
            [],
        )
        draft = _Draft(block, 0, np.zeros(capacity // 8, dtype=np.uint8), 0)
        txn.views[number] = draft
        return draft

    def _relocate(self, txn: _Transaction, draft: _Draft) -> None:
        """Move a block's live rows to the tail and drop the block."""
        block = draft.block
        rows = _live_rows(draft.live, draft.used)
        del txn.views[block.number]
        self._append(
            txn,
            block.vectors[rows],
            block.ids[rows],
            block.gids[rows],
            [block.texts[r] for r in rows.tolist()],
        )

    def _compact(self, txn: _Transaction) -> None:
        for view in list(txn.views.values()):
            if (
                isinstance(view, _Draft)
                and view.used == self.block_size
                and view.used - view.n_live > self.compact_fraction * view.used
            ):
                self._relocate(txn, view)

    def _release_dead_groups(self) -> None:
        """Forget the metadata of groups without live chunks once they outnumber the live ones."""
        live_groups = len(self._groups) - len(self._dead_groups)
        if len(self._dead_groups) <= max(1024, live_groups):
            return
        # A new list, so that snapshots still reading the old one keep their metadata.
        groups = list(self._groups)
        for gid in self._dead_groups:
            key = self._group_keys[gid]
            if key is not None:
                del self._group_of_key[key]
            self._group_keys[gid] = None
            groups[gid] = None
        self._groups = groups
        self._dead_groups.clear()

    def _publish(self, txn: _Transaction) -> None:
        views = txn.freeze()
        self._snapshot = _Snapshot(views, self._groups, len(self._groups), sum(v.n_live for v in views))
        if self.kind == "hnsw":
            for block in txn.sealed:
                self._schedule_graph(block)

    # ------------------------------------------------------------------------------------- HNSW

    def _schedule_graph(self, block: _Block) -> None:
        if not self.background:
            self._build_graph(block)
            return
        if self._builder is None:
            self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss-hnsw")
        self._builder.submit(self._build_graph, block).add_done_callback(_log_failure)

    def _build_graph(self, block: _Block) -> None:
        if block.hnsw is not None or not any(view.block is block for view in self._snapshot.views):
            return  # built already, or compacted away before its turn
        graph = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        # One OpenMP thread: on a busy machine faiss's threads spin against each other and against
        # searches (a 1024-node build measured 12x slower with 2 threads). The setting is per thread.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            graph.add(block.vectors)
        finally:
            faiss.omp_set_num_threads(threads)
        # The block's rows never change once it is full, so readers can start using the graph at once.
        block.hnsw = graph

    def wait_for_graphs(self) -> None:
        """Block until every HNSW graph scheduled so far is built."""
        builder = self._builder
        if builder is not None:
            builder.submit(lambda: None).result()

    def close(self) -> None:
        """Stop the background builder; the index stays searchable (exactly, where graphs are missing)."""
        if self._builder is not None:
            self._builder.shutdown(wait=True, cancel_futures=True)
            self._builder = None

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
        match = self._group_matches(snapshot, filter) if filter is not None else None
        scores: list[FloatArray] = []
        rows: list[IntArray] = []
        owners: list[int] = []
        for position, view in enumerate(snapshot.views):
            allowed = view.live if match is None else _allowed(view, match)
            found = self._search_block(view, allowed, queries, k)
            if found is not None:
                scores.append(found[0])
                rows.append(found[1])
                owners.append(position)
        return [self._merge(snapshot, q, scores, rows, owners, k) for q in range(len(queries))]

    def _search_block(
        self, view: _BlockView, allowed: BitArray, queries: FloatArray, k: int
    ) -> tuple[FloatArray, IntArray] | None:
        """Top-k inner products and rows of one block among ``allowed`` rows (row -1: none)."""
        n_allowed = int(_POPCOUNT[allowed].sum())
        if n_allowed == 0:
            return None
        k = min(k, n_allowed)
        block = view.block
        graph = block.hnsw
        # Search exactly when the selector rejects most of the graph, or when the graph found fewer than k.
        if graph is not None and n_allowed >= max(4 * k, _GRAPH_MIN_FRACTION * view.used):
            found = self._search_graph(graph, allowed, queries, k)
            if bool((found[1] >= 0).all()):
                return found
        if n_allowed <= _GATHER_FRACTION * view.used:
            return _gathered_topk(block.vectors, _live_rows(allowed, view.used), queries, k)
        return _scanned_topk(block.vectors, view.used, allowed, queries, k)

    def _search_graph(
        self, graph: Any, allowed: BitArray, queries: FloatArray, k: int
    ) -> tuple[FloatArray, IntArray]:
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(allowed))
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
        params.efSearch = max(self.ef_search, k)
        params.sel = selector
        distances, labels = graph.search(queries, k, params=params)
        return distances, labels

    def _merge(
        self,
        snapshot: _Snapshot,
        query: int,
        scores: list[FloatArray],
        rows: list[IntArray],
        owners: list[int],
        k: int,
    ) -> list[Hit]:
        if not scores:
            return []
        all_scores = np.concatenate([s[query] for s in scores])
        all_rows = np.concatenate([r[query] for r in rows])
        all_owners = np.repeat(np.asarray(owners, dtype=np.int64), [r.shape[1] for r in rows])
        keep = all_rows >= 0
        all_scores, all_rows, all_owners = all_scores[keep], all_rows[keep], all_owners[keep]
        ids = np.fromiter(
            (
                snapshot.views[o].block.ids[r]
                for o, r in zip(all_owners.tolist(), all_rows.tolist(), strict=True)
            ),
            dtype=np.int64,
            count=len(all_rows),
        )
        order = np.lexsort((ids, -all_scores))[:k]
        hits = []
        for i in order.tolist():
            block = snapshot.views[int(all_owners[i])].block
            row = int(all_rows[i])
            metadata = snapshot.groups[int(block.gids[row])]
            assert metadata is not None  # a live row's group is never released
            text = block.texts[row]
            if isinstance(text, tuple):  # chunk-level fields ride with the text, merged over the group's
                text, extra = text
                metadata = {**metadata, **extra}
            hits.append(Hit(int(ids[i]), text, metadata, float(1.0 - all_scores[i])))
        return hits

    def _group_matches(self, snapshot: _Snapshot, predicate: Predicate) -> npt.NDArray[np.bool_]:
        """Whether each group's metadata passes ``predicate``, evaluated once per group.

        A :class:`MetadataFilter` is pure, so its answers are kept and only groups new since are
        evaluated; any other callable is evaluated afresh on every search, and what it raises propagates.
        """
        n = snapshot.n_groups
        known = np.zeros(0, dtype=np.bool_)
        cache_key = predicate if isinstance(predicate, MetadataFilter) else None
        if cache_key is not None:
            with self._match_lock:
                cached = self._match_cache.get(cache_key)
            # Answers hold for one group list only: releasing dead groups starts a new list.
            if cached is not None and cached[0] is snapshot.groups:
                known = cached[1]
            if len(known) >= n:
                return known
        groups = itertools.islice(snapshot.groups, len(known), n)
        fresh = np.fromiter(
            (meta is not None and bool(predicate(meta)) for meta in groups),
            dtype=np.bool_,
            count=n - len(known),
        )
        match = np.concatenate([known, fresh])
        if cache_key is not None and snapshot.groups is self._groups:
            with self._match_lock:
                self._match_cache[cache_key] = (snapshot.groups, match)
                self._match_cache.move_to_end(cache_key)
                while len(self._match_cache) > _MATCH_CACHE_SIZE:
                    self._match_cache.popitem(last=False)
        return match

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
            groups=int(np.count_nonzero(self._group_live)),
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
        snapshot = self._snapshot
        payload = {
            "format": _FORMAT,
            "dim": self.dim,
            "block_size": self.block_size,
            "groups": list(itertools.islice(snapshot.groups, snapshot.n_groups)),
            "blocks": [
                {
                    "vectors": view.block.vectors[: view.used],
                    "ids": view.block.ids[: view.used],
                    "gids": view.block.gids[: view.used],
                    "texts": view.block.texts[: view.used],
                    "live": view.live[: (view.used + 7) // 8],
                    "hnsw": faiss.serialize_index(view.block.hnsw) if view.block.hnsw is not None else None,
                }
                for view in snapshot.views
            ],
        }
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "wb") as out:
                    pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            _fsync_directory(directory)
        except OSError as error:
            raise IndexStoreError(f"cannot save the index to {path!r}: {error}") from error

    def load(self, path: str) -> None:
        """Replace the contents with those saved at ``path`` (atomically for readers).

        Raises:
            IndexStoreError: the file is missing, unreadable, not an index file, or holds vectors of
                another dimension.
        """
        try:
            with open(path, "rb") as file:
                payload = pickle.load(file)
        except Exception as error:  # unpickling damaged bytes can raise almost anything
            raise IndexStoreError(f"cannot load the index from {path!r}: {error}") from error
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise IndexStoreError(f"{path!r} is not a ragflow faiss index file (expected format {_FORMAT})")
        if payload["dim"] != self.dim:
            raise IndexStoreError(
                f"{path!r} holds {payload['dim']}-d vectors, this index holds {self.dim}-d ones"
            )
        fresh = FaissIndex(
            self.dim,
            self.kind,
            self.hnsw_m,
            self.ef_search,
            self.ef_construction,
            self.block_size,
            self.compact_fraction,
            background=False,
        )
        try:
            fresh._fill(payload)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
            raise IndexStoreError(f"{path!r} is damaged: {type(error).__name__}: {error}") from error
        with self._write_lock:
            self._id_to_slot = fresh._id_to_slot
            self._groups = fresh._groups
            self._group_keys = fresh._group_keys
            self._group_of_key = fresh._group_of_key
            self._group_live = fresh._group_live
            self._dead_groups = fresh._dead_groups
            self._next_block = fresh._next_block
            self._snapshot = fresh._snapshot
            with self._match_lock:
                self._match_cache.clear()
            if self.kind == "hnsw":
                for view in self._snapshot.views:
                    if view.used == self.block_size and view.block.hnsw is None:
                        self._schedule_graph(view.block)

    def _fill(self, payload: dict[str, Any]) -> None:
        """Load a saved payload into this new, still private index."""
        self._groups.extend(payload["groups"])
        self._group_keys.extend(_metadata_key(g) if g is not None else None for g in self._groups)
        self._group_of_key.update((key, gid) for gid, key in enumerate(self._group_keys) if key is not None)
        self._group_live = np.zeros(max(len(self._groups), 1024), dtype=np.int64)
        txn = _Transaction(())
        same_layout = payload["block_size"] == self.block_size
        for saved in payload["blocks"]:
            rows = _live_rows(saved["live"], len(saved["ids"]))
            np.add.at(self._group_live, saved["gids"][rows], 1)
            if same_layout:
                self._restore_block(txn, saved, rows)
            else:
                texts = saved["texts"]
                self._append(
                    txn,
                    saved["vectors"][rows],
                    saved["ids"][rows],
                    saved["gids"][rows],
                    [texts[r] for r in rows],
                )
        self._dead_groups.update(
            gid for gid, meta in enumerate(self._groups) if meta is not None and self._group_live[gid] == 0
        )
        self._release_dead_groups()
        views = txn.freeze()
        self._snapshot = _Snapshot(views, self._groups, len(self._groups), sum(v.n_live for v in views))

    def _restore_block(self, txn: _Transaction, saved: dict[str, Any], rows: IntArray) -> None:
        used = len(saved["ids"])
        capacity = self.block_size if used == self.block_size else max(_INITIAL_TAIL_ROWS, _ceil8(used))
        draft = self._new_block(txn, min(capacity, self.block_size))
        block = draft.block
        if used == block.capacity:
            # Adopt the loaded arrays instead of copying them: loading then peaks at one copy of the index.
            block.vectors = np.require(saved["vectors"], np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
            block.ids = np.require(saved["ids"], np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
            block.gids = np.require(saved["gids"], np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
        else:
            block.vectors[:used] = saved["vectors"]
            block.ids[:used] = saved["ids"]
            block.gids[:used] = saved["gids"]
        if block.vectors.shape != (block.capacity, self.dim) or len(saved["texts"]) != used:
            raise ValueError(f"a block of {used} ids has vectors of shape {saved['vectors'].shape}")
        block.texts.extend(saved["texts"])
        draft.live[: len(saved["live"])] = saved["live"]
        draft.used, draft.n_live = used, len(rows)
        if self.kind == "hnsw" and saved["hnsw"] is not None:
            block.hnsw = faiss.deserialize_index(saved["hnsw"])
        base = block.number << _ROW_BITS
        self._id_to_slot.update(zip(block.ids[rows].tolist(), (base + rows).tolist(), strict=True))


# ---------------------------------------------------------------------------------------- helpers


def _log_failure(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        # The block stays searchable exactly; only its speed-up is lost.
        _log.error("building an HNSW graph failed; that block is searched exactly", exc_info=error)


def _checked_id(value: int) -> int:
    chunk_id = int(value)
    if not -(1 << 63) <= chunk_id < 1 << 63:
        raise IndexStoreError(f"chunk id {chunk_id} does not fit in a signed 64-bit integer")
    return chunk_id


def _metadata_key(value: Any) -> Hashable:
    """A hashable stand-in for a metadata value: equal keys mean equal values of the same types."""
    if isinstance(value, Mapping):
        return (Mapping, frozenset((k, _metadata_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (list, tuple(_metadata_key(v) for v in value))
    try:
        hash(value)
    except TypeError:
        # Unhashable and not a container we know: equal only to itself (the group keeps it alive).
        return (id, id(value))
    return (type(value), value)


def _ceil8(n: int) -> int:
    return (n + 7) // 8 * 8


def _resized(array: npt.NDArray[Any], capacity: int) -> npt.NDArray[Any]:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _set_bit_range(bitmap: BitArray, start: int, stop: int) -> None:
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


def _live_rows(bitmap: BitArray, used: int) -> IntArray:
    return np.flatnonzero(np.unpackbits(bitmap, count=used, bitorder="little")).astype(np.int64)


def _allowed(view: _BlockView, match: npt.NDArray[np.bool_]) -> BitArray:
    """The live rows of ``view`` whose group passes the filter, as a packed bitmap."""
    passing = np.packbits(match[view.block.gids[: view.used]], bitorder="little")
    return passing & view.live[: len(passing)]


def _scanned_topk(
    vectors: FloatArray, used: int, allowed: BitArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """Exact top-k over a block's allowed rows: faiss with a bitmap selector, or BLAS for many queries."""
    n_queries = len(queries)
    if n_queries >= faiss.cvar.distance_compute_blas_threshold:
        # faiss falls back to its slow one-query-at-a-time loop when given a selector; BLAS then masking wins.
        scores = queries @ vectors[:used].T
        scores[:, np.unpackbits(allowed, count=used, bitorder="little") == 0] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        return np.take_along_axis(scores, top, axis=1), top.astype(np.int64)
    distances = np.empty((n_queries, k), dtype=np.float32)
    labels = np.empty((n_queries, k), dtype=np.int64)
    # Always pass a selector: faiss's selector-free path for a single query is slower (OpenMP overhead).
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(allowed))
    faiss.knn_inner_product(
        faiss.swig_ptr(queries),
        faiss.swig_ptr(vectors),
        vectors.shape[1],
        n_queries,
        used,
        k,
        faiss.swig_ptr(distances),
        faiss.swig_ptr(labels),
        selector,
    )
    return distances, labels


def _gathered_topk(
    vectors: FloatArray, rows: IntArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """Exact top-k over a few rows, scored directly."""
    scores = queries @ vectors[rows].T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), rows[top]


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; some filesystems refuse to open directories, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
