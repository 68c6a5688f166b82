"""Searching a faiss index snapshot: per block, a graph search, an exact scan or an exact score of a few
gathered rows, restricted to the rows a filter allows; then one merge of the blocks' top-k into hits."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import faiss
import numpy as np
import numpy.typing as npt

from ragflow.documents import Hit
from ragflow.filters import MetadataFilter

from ._blocks import (
    ROW_BITS,
    ROW_MASK,
    BitArray,
    BlockView,
    FloatArray,
    IntArray,
    Metadata,
    Rows,
    Snapshot,
    count_bits,
    live_rows,
)
from ._compact import DiskRows, one_thread

Predicate = Callable[[Metadata], bool]
BoolArray = npt.NDArray[np.bool_]

# Batched faiss searches are 7-9x faster with BLAS from 20 queries on (measured, ENVIRONMENT.md).
faiss.cvar.distance_compute_blas_threshold = 20

_MATCH_CACHE_SIZE = 64
# Below this share of allowed rows, gathering them and scoring exactly beats scanning a whole block.
_GATHER_FRACTION = 1 / 32
# Below this share of allowed rows, an HNSW graph search with a selector wanders and comes back short.
_GRAPH_MIN_FRACTION = 0.2
# Rows of a compact block's file scanned at once when no codes can stand in for them (12 MiB at dim 384).
_DISK_SCAN_ROWS = 8192
# Up to this many allowed rows of a compact block on disk (a filter on one document) are read and scored
# exactly: cheaper than scanning the block's codes (~0.25 ms for 65,536 rows) for candidates to re-rank.
_DISK_GATHER_ROWS = 32


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """How blocks are searched: the HNSW breadth, and for compact blocks how many candidates per hit
    are re-ranked with full-precision vectors."""

    ef_search: int
    rerank: int
    cache: SearchCache = field(default_factory=lambda: SearchCache(), compare=False)
    """What searches of the index reuse from one another."""


class SearchCache:
    """What searches reuse from one another, keyed by the (immutable, published) arrays it was derived
    from and holding them, so that a key's ids cannot be reused while it is kept: a block view's live
    bitmap lives until an apply replaces the view, a kept filter's answers until new groups come.

    Both tables are small and simply emptied when full (what is current comes back at once); readers in
    several threads share them (single dict operations, atomic under the GIL).
    """

    KEPT = 1024

    def __init__(self) -> None:
        self.graph_params: dict[tuple[int, int], tuple[BitArray, Any]] = {}
        """HNSW search parameters (breadth, selector over a live bitmap) by bitmap and breadth."""
        self.allowed: dict[tuple[int, int], tuple[BitArray, BoolArray, _Allowed]] = {}
        """A block's rows a kept filter allows, by live bitmap and filter answers."""

    def clear(self) -> None:
        self.graph_params.clear()
        self.allowed.clear()

    def remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= self.KEPT:
            table.clear()
        table[key] = value


class _Allowed(NamedTuple):
    """The rows of a block a search may return: a packed bitmap, how many, and (when they are few enough
    to be gathered and scored directly) their row numbers."""

    bitmap: BitArray
    n: int
    rows: IntArray | None


def search_snapshot(
    snapshot: Snapshot,
    queries: FloatArray,
    k: int,
    match: BoolArray | None,
    settings: SearchSettings,
    keep_match: bool = False,
) -> list[list[Hit]]:
    """The ``k`` nearest live rows to each of the (normalised) ``queries`` among those whose group
    ``match`` allows (all when ``None``), by ascending cosine distance, ties by id. ``keep_match``: the
    filter answers are kept by the caller (a repeated filter): what they allow per block is kept too."""
    # A few queries search in the calling thread: an OpenMP region per block would only add thread
    # hand-offs (one query is not split across threads) and, on a busy machine, waits for the other core.
    threads = one_thread() if len(queries) < faiss.cvar.distance_compute_blas_threshold else nullcontext()
    with threads:
        return _search_views(snapshot, queries, k, match, settings, keep_match)


def _search_views(
    snapshot: Snapshot,
    queries: FloatArray,
    k: int,
    match: BoolArray | None,
    settings: SearchSettings,
    keep_match: bool,
) -> list[list[Hit]]:
    found: list[_Part] = []
    coarse: list[_Part] = []
    for position, view in enumerate(snapshot.views):
        allowed = _allowed(view, match, settings.cache if keep_match else None)
        if allowed.n == 0:
            continue
        for scores, rows, on_disk in _search_block(view, allowed, queries, k, settings):
            ids = view.block.ids[rows if rows.min() >= 0 else np.maximum(rows, 0)]
            (coarse if on_disk else found).append(_Part(scores, rows, ids, position))
    if coarse:
        found.append(_reranked_from_disk(snapshot, coarse, queries, k * settings.rerank))
    return [_merge(snapshot, q, found, k) for q in range(len(queries))]


class _Part(NamedTuple):
    """Candidates of each query: scores, rows (-1: none), their chunk ids (meaningless where the row is
    -1), and the position in the snapshot of the block each row is in (one block, or per candidate)."""

    scores: FloatArray
    rows: IntArray
    ids: IntArray
    owners: int | IntArray


class FilterMatches:
    """Which metadata groups each filter accepts, evaluated once per group.

    A :class:`MetadataFilter` is pure, so its answers are kept (for the most recent filters) and only
    groups new since are evaluated; any other callable is evaluated afresh on every search, and what it
    raises propagates.
    """

    def __init__(self) -> None:
        self._cache: OrderedDict[MetadataFilter, tuple[list[Metadata | None], BoolArray]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, snapshot: Snapshot, predicate: Predicate, current: list[Metadata | None]) -> BoolArray:
        """Whether each group of ``snapshot`` passes ``predicate``; ``current`` is the writer's group
        list, the only one whose answers are worth keeping."""
        n = snapshot.n_groups
        known = np.zeros(0, dtype=np.bool_)
        cache_key = predicate if isinstance(predicate, MetadataFilter) else None
        if cache_key is not None:
            with self._lock:
                cached = self._cache.get(cache_key)
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
        if cache_key is not None and snapshot.groups is current:
            with self._lock:
                self._cache[cache_key] = (snapshot.groups, match)
                self._cache.move_to_end(cache_key)
                while len(self._cache) > _MATCH_CACHE_SIZE:
                    self._cache.popitem(last=False)
        return match

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


def _allowed(view: BlockView, match: BoolArray | None, cache: SearchCache | None) -> _Allowed:
    """The live rows of ``view`` whose group passes the filter (all live rows without one); kept in
    ``cache`` when given."""
    live = view.live
    if match is None:
        return _Allowed(live, view.n_live, None)
    key = (id(live), id(match))
    if cache is not None:
        kept = cache.allowed.get(key)
        if kept is not None and kept[0] is live and kept[1] is match:
            return kept[2]
    # "clip": a dead row's group id may be newer than this snapshot (a dormant row revived since).
    passing = np.packbits(np.take(match, view.block.gids[: view.used], mode="clip"), bitorder="little")
    bitmap = passing & live[: len(passing)]
    count = count_bits(bitmap)
    rows = live_rows(bitmap, view.used) if count <= _GATHER_FRACTION * view.used else None
    allowed = _Allowed(bitmap, count, rows)
    if cache is not None:
        cache.remember(cache.allowed, key, (live, match, allowed))
    return allowed


Found = tuple[FloatArray, IntArray, bool]
"""A block's top candidates of each query: scores, rows (-1: none), and whether the scores come from
compact codes of rows kept on disk (to be re-ranked with the other blocks' such candidates)."""


def _search_block(
    view: BlockView, allowed: _Allowed, queries: FloatArray, k: int, settings: SearchSettings
) -> list[Found]:
    """Top-k inner products and rows of one block among its ``allowed`` rows (for a compact block whose
    rows are on disk: its best ``rerank * k`` candidates by their codes)."""
    bitmap, n_allowed = allowed.bitmap, allowed.n
    k = min(k, n_allowed)
    block = view.block
    graph, codes, vectors = block.hnsw, block.codes, block.vectors
    if graph is not None and n_allowed >= max(4 * k, _GRAPH_MIN_FRACTION * view.used):
        found = _graph_search(view, graph, codes, vectors, bitmap, n_allowed, queries, k, settings)
        if found is not None:
            return found
    on_disk = isinstance(vectors, DiskRows)
    if on_disk and codes is not None and codes.ntotal >= view.used and n_allowed > _DISK_GATHER_ROWS:
        # The codes, scanned with the filter as selector, give candidates; only those re-ranked are read.
        scores, rows = _codes_topk(codes, bitmap, queries, min(n_allowed, k * settings.rerank))
        return [(scores, rows, True)]
    # Search exactly when the selector rejects most of the graph, or when the graph found fewer than k.
    if n_allowed <= _GATHER_FRACTION * view.used:
        gathered = allowed.rows if allowed.rows is not None else live_rows(bitmap, view.used)
        scores, rows = _gathered_topk(vectors, gathered, queries, k)
    elif isinstance(vectors, DiskRows):
        scores, rows = _scanned_disk_topk(vectors, view.used, bitmap, queries, k)
    else:
        scores, rows = _scanned_topk(vectors, view.used, bitmap, queries, k)
    return [(scores, rows, False)]


def _graph_search(
    view: BlockView,
    graph: Any,
    codes: Any,
    vectors: Rows,
    allowed: BitArray,
    n_allowed: int,
    queries: FloatArray,
    k: int,
    settings: SearchSettings,
) -> list[Found] | None:
    """Top-k of a block through its graph, the rows the graph does not cover yet (the tail's newest)
    scored exactly; None when the graph found fewer than k."""
    used = view.used
    covered = min(int(graph.ntotal), used)
    newest: BoolArray | None = None
    in_graph = n_allowed
    if covered < used:
        first = covered >> 3  # the newest rows' bits, from the byte holding the first one
        bits = np.unpackbits(allowed[first : (used + 7) >> 3], count=used - 8 * first, bitorder="little")
        newest = bits[covered - 8 * first :].view(np.bool_)
        in_graph -= int(np.count_nonzero(newest))
    if in_graph < k:
        return None
    # A graph over compact codes gives candidates, re-ranked with the full-precision rows.
    wanted = k if codes is None else min(in_graph, k * settings.rerank)
    params = _graph_params(settings.cache, allowed, max(settings.ef_search, wanted), allowed is view.live)
    scores, rows = _graph_topk(graph, params, queries, wanted)
    if (rows < 0).any():  # found fewer than wanted
        return None
    found: list[Found]
    if codes is None:
        found = [(scores, rows, False)]
    elif isinstance(vectors, DiskRows):
        found = [(scores, rows, True)]  # re-ranked with every other block's candidates read from disk
    else:
        found = [(*_reranked(vectors, rows, queries, k), False)]
    if newest is not None and in_graph < n_allowed:
        found.append(
            (*_newest_topk(vectors, covered, used, newest, queries, min(k, n_allowed - in_graph)), False)
        )
    return found


def _newest_topk(
    vectors: Rows, covered: int, used: int, allowed: BoolArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """Exact top-k among rows ``covered..used-1`` (``allowed`` for each), scored in place: one product
    with a slice of the rows, no copy (a tail's rows its graph does not cover yet, a few thousand)."""
    scores = queries @ vectors[covered:used].T
    scores[:, ~allowed] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), top + covered


def _graph_params(cache: SearchCache, allowed: BitArray, ef_search: int, keep: bool) -> Any:
    """HNSW search parameters: breadth ``ef_search``, the bitmap as selector; kept for reuse when
    ``allowed`` is a view's live bitmap (it lives as long as the view)."""
    key = (id(allowed), ef_search)
    found = cache.graph_params.get(key) if keep else None
    if found is not None and found[0] is allowed:
        return found[1]
    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
    params.efSearch = ef_search
    params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(allowed))
    if keep:
        cache.remember(cache.graph_params, key, (allowed, params))
    return params


def _graph_topk(graph: Any, params: Any, queries: FloatArray, k: int) -> tuple[FloatArray, IntArray]:
    """Approximate top-k from a block's HNSW graph (row -1: not found)."""
    n = len(queries)
    distances = np.empty((n, k), dtype=np.float32)
    labels = np.empty((n, k), dtype=np.int64)
    # search_c: faiss's own search, without its Python wrapper's checks (queries are ours, contiguous).
    graph.search_c(n, faiss.swig_ptr(queries), k, faiss.swig_ptr(distances), faiss.swig_ptr(labels), params)
    return distances, labels


def _codes_topk(codes: Any, allowed: BitArray, queries: FloatArray, k: int) -> tuple[FloatArray, IntArray]:
    """Top-k by compact codes (an ``IndexScalarQuantizer`` scanned in full), the bitmap as selector."""
    params = faiss.SearchParameters()
    params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(allowed))
    distances, labels = codes.search(queries, k, params=params)
    return distances, labels


def _reranked(
    vectors: FloatArray, candidates: IntArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """The top-k of each query's candidate rows (row -1: none) by exact inner product with ``vectors``."""
    valid = candidates >= 0
    rows = np.where(valid, candidates, 0)
    scores = np.einsum("qcd,qd->qc", vectors[rows], queries)
    scores[~valid] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(rows, top, axis=1)


def _reranked_from_disk(snapshot: Snapshot, parts: list[_Part], queries: FloatArray, wanted: int) -> _Part:
    """Each query's ``wanted`` best candidates by code score among ``parts`` (compact blocks whose rows
    are on disk), scored exactly with their full-precision rows, each row read once."""
    scores = np.concatenate([p.scores for p in parts], axis=1)
    rows = np.concatenate([p.rows for p in parts], axis=1)
    owners = np.concatenate([np.full(p.rows.shape, p.owners, dtype=np.int64) for p in parts], axis=1)
    ids = np.concatenate([p.ids for p in parts], axis=1)
    scores[rows < 0] = -np.inf
    if scores.shape[1] > wanted:
        top = np.argpartition(-scores, wanted - 1, axis=1)[:, :wanted]
        scores, rows, owners, ids = (np.take_along_axis(a, top, axis=1) for a in (scores, rows, owners, ids))
    valid = np.isfinite(scores)
    which = np.nonzero(valid)[0]
    keys, inverse = np.unique((owners[valid] << ROW_BITS) | rows[valid], return_inverse=True)
    exact_rows = np.empty((len(keys), queries.shape[1]), dtype=np.float32)
    # A few dozen rows: one pread each, straight into place (cheaper than grouping them by block). Rows
    # the page cache does not hold are all requested first, so that their reads overlap.
    rows_of = (keys & ROW_MASK).tolist()
    files: list[DiskRows] = []
    for key, row in zip(keys.tolist(), rows_of, strict=True):
        vectors = snapshot.views[key >> ROW_BITS].block.vectors
        assert isinstance(vectors, DiskRows)  # a full compact block's rows never come back to memory
        vectors.prefetch(row)
        files.append(vectors)
    for position, (vectors, row) in enumerate(zip(files, rows_of, strict=True)):
        vectors.read_into(row, exact_rows[position])
    exact = np.full(scores.shape, -np.inf, dtype=np.float32)
    exact[valid] = np.einsum("cd,cd->c", exact_rows[inverse.reshape(-1)], queries[which])
    return _Part(exact, np.where(valid, rows, -1), ids, owners)


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


def _scanned_disk_topk(
    vectors: DiskRows, used: int, allowed: BitArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """:func:`_scanned_topk` over rows kept on disk, read a slice at a time (never all held at once)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, used, _DISK_SCAN_ROWS):
        stop = min(used, start + _DISK_SCAN_ROWS)
        part = allowed[start // 8 : (stop + 7) // 8]
        n_allowed = count_bits(part)
        if not n_allowed:
            continue
        scores, rows = _scanned_topk(
            vectors.read(start, stop), stop - start, part, queries, min(k, n_allowed)
        )
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, np.where(rows >= 0, rows + start, -1)], axis=1)
    best_scores[best_rows < 0] = -np.inf
    top = np.argpartition(-best_scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(best_scores, top, axis=1), np.take_along_axis(best_rows, top, axis=1)


def _gathered_topk(vectors: Rows, rows: IntArray, queries: FloatArray, k: int) -> tuple[FloatArray, IntArray]:
    """Exact top-k over a few rows, scored directly."""
    scores = queries @ vectors[rows].T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), rows[top]


def _merge(snapshot: Snapshot, query: int, parts: list[_Part], k: int) -> list[Hit]:
    """The top ``k`` hits of one query over the blocks' candidates."""
    if not parts:
        return []
    scores = np.concatenate([p.scores[query] for p in parts])
    rows = np.concatenate([p.rows[query] for p in parts])
    ids = np.concatenate([p.ids[query] for p in parts])
    owners = np.concatenate(
        [
            np.full(p.rows.shape[1], p.owners, dtype=np.int64)
            if isinstance(p.owners, int)
            else p.owners[query]
            for p in parts
        ]
    )
    keep = rows >= 0
    if not keep.all():
        scores, rows, ids, owners = scores[keep], rows[keep], ids[keep], owners[keep]
    order = np.lexsort((ids, -scores))[:k]
    hits = []
    for i in order.tolist():
        block = snapshot.views[int(owners[i])].block
        row = int(rows[i])
        metadata = snapshot.groups[int(block.gids[row])]
        assert metadata is not None  # a live row's group is never released
        text = block.texts[row]
        if isinstance(text, tuple):  # chunk-level fields ride with the text, merged over the group's
            text, extra = text
            metadata = {**metadata, **extra}
        hits.append(Hit(int(ids[i]), text, metadata, float(1.0 - scores[i])))
    return hits
