"""Searching a faiss index snapshot: per block, a graph search, an exact scan or an exact score of a few
gathered rows, restricted to the rows a filter allows; then one merge of the blocks' top-k into hits."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from ragflow.documents import Hit
from ragflow.filters import MetadataFilter

from ._blocks import BitArray, BlockView, FloatArray, IntArray, Metadata, Snapshot, count_bits, live_rows
from ._compact import one_thread

Predicate = Callable[[Metadata], bool]
BoolArray = npt.NDArray[np.bool_]

# Batched faiss searches are 7-9x faster with BLAS from 20 queries on (measured, ENVIRONMENT.md).
faiss.cvar.distance_compute_blas_threshold = 20

_MATCH_CACHE_SIZE = 64
# Below this share of allowed rows, gathering them and scoring exactly beats scanning a whole block.
_GATHER_FRACTION = 1 / 32
# Below this share of allowed rows, an HNSW graph search with a selector wanders and comes back short.
_GRAPH_MIN_FRACTION = 0.2
_NO_ROWS: IntArray = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """How blocks are searched: the HNSW breadth, and for compact blocks how many candidates per hit
    are re-ranked with full-precision vectors."""

    ef_search: int
    rerank: int


def search_snapshot(
    snapshot: Snapshot, queries: FloatArray, k: int, match: BoolArray | None, settings: SearchSettings
) -> list[list[Hit]]:
    """The ``k`` nearest live rows to each of the (normalised) ``queries`` among those whose group
    ``match`` allows (all when ``None``), by ascending cosine distance, ties by id."""
    # A few queries search in the calling thread: an OpenMP region per block would only add thread
    # hand-offs (one query is not split across threads) and, on a busy machine, waits for the other core.
    threads = one_thread() if len(queries) < faiss.cvar.distance_compute_blas_threshold else nullcontext()
    with threads:
        return _search_views(snapshot, queries, k, match, settings)


def _search_views(
    snapshot: Snapshot, queries: FloatArray, k: int, match: BoolArray | None, settings: SearchSettings
) -> list[list[Hit]]:
    scores: list[FloatArray] = []
    rows: list[IntArray] = []
    owners: list[int] = []
    for position, view in enumerate(snapshot.views):
        if match is None:
            allowed, n_allowed = view.live, view.n_live
        else:
            allowed = _allowed(view, match)
            n_allowed = count_bits(allowed)
        found = _search_block(view, allowed, n_allowed, queries, k, settings)
        if found is not None:
            scores.append(found[0])
            rows.append(found[1])
            owners.append(position)
    return [_merge(snapshot, q, scores, rows, owners, k) for q in range(len(queries))]


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


def _allowed(view: BlockView, match: BoolArray) -> BitArray:
    """The live rows of ``view`` whose group passes the filter, as a packed bitmap."""
    # "clip": a dead row's group id may be newer than this snapshot (a dormant row revived since).
    passing = np.packbits(np.take(match, view.block.gids[: view.used], mode="clip"), bitorder="little")
    return passing & view.live[: len(passing)]


def _search_block(
    view: BlockView, allowed: BitArray, n_allowed: int, queries: FloatArray, k: int, settings: SearchSettings
) -> tuple[FloatArray, IntArray] | None:
    """Top-k inner products and rows of one block among its ``n_allowed`` ``allowed`` rows."""
    if n_allowed == 0:
        return None
    k = min(k, n_allowed)
    block = view.block
    graph = block.hnsw
    if graph is not None and n_allowed >= max(4 * k, _GRAPH_MIN_FRACTION * view.used):
        found = _graph_search(view, graph, allowed, n_allowed, queries, k, settings)
        if found is not None:
            return found
    # Search exactly when the selector rejects most of the graph, or when the graph found fewer than k.
    if n_allowed <= _GATHER_FRACTION * view.used:
        return _gathered_topk(block.vectors, live_rows(allowed, view.used), queries, k)
    return _scanned_topk(block.vectors, view.used, allowed, queries, k)


def _graph_search(
    view: BlockView,
    graph: Any,
    allowed: BitArray,
    n_allowed: int,
    queries: FloatArray,
    k: int,
    settings: SearchSettings,
) -> tuple[FloatArray, IntArray] | None:
    """Top-k of a block through its graph, the rows the graph does not cover yet (the tail's newest)
    scored exactly; None when the graph found fewer than k."""
    block, used = view.block, view.used
    covered = min(int(graph.ntotal), used)
    newest = _NO_ROWS
    if covered < used:
        rows = live_rows(allowed, used)
        newest = rows[rows >= covered]
    in_graph = n_allowed - len(newest)
    if in_graph < k:
        return None
    # A graph over compact codes gives candidates, re-ranked with the full-precision rows.
    wanted = k if block.codes is None else min(in_graph, k * settings.rerank)
    found = _graph_topk(graph, allowed, queries, wanted, max(settings.ef_search, wanted))
    if not bool((found[1] >= 0).all()):
        return None
    if block.codes is not None:
        found = _reranked(block.vectors, found[1], queries, k)
    if not len(newest):
        return found
    rest = _gathered_topk(block.vectors, newest, queries, min(k, len(newest)))
    scores = np.concatenate([found[0], rest[0]], axis=1)
    rows = np.concatenate([found[1], rest[1]], axis=1)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(rows, top, axis=1)


def _graph_topk(
    graph: Any, allowed: BitArray, queries: FloatArray, k: int, ef_search: int
) -> tuple[FloatArray, IntArray]:
    """Approximate top-k from a block's HNSW graph, the bitmap as selector (row -1: not found)."""
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(allowed))
    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
    params.efSearch = ef_search
    params.sel = selector
    distances, labels = graph.search(queries, k, params=params)
    return distances, labels


def _reranked(
    vectors: FloatArray, candidates: IntArray, queries: FloatArray, k: int
) -> tuple[FloatArray, IntArray]:
    """The top-k of each query's candidate rows (row -1: none) by exact inner product with ``vectors``."""
    valid = candidates >= 0
    rows = np.where(valid, candidates, 0)
    wanted = np.unique(rows)  # one sorted read of each row from the memory map
    exact = np.asarray(vectors[wanted], dtype=np.float32)
    position = np.searchsorted(wanted, rows)
    scores = np.einsum("qcd,qd->qc", exact[position], queries)
    scores[~valid] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return np.take_along_axis(scores, top, axis=1), np.take_along_axis(rows, top, axis=1)


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


def _merge(
    snapshot: Snapshot,
    query: int,
    scores: list[FloatArray],
    rows: list[IntArray],
    owners: list[int],
    k: int,
) -> list[Hit]:
    """The top ``k`` hits of one query over its per-block top-k (``owners``: the blocks' positions)."""
    if not scores:
        return []
    all_scores = np.concatenate([s[query] for s in scores])
    all_rows = np.concatenate([r[query] for r in rows])
    all_owners = np.repeat(np.asarray(owners, dtype=np.int64), [r.shape[1] for r in rows])
    keep = all_rows >= 0
    all_scores, all_rows, all_owners = all_scores[keep], all_rows[keep], all_owners[keep]
    ids = np.fromiter(
        (snapshot.views[o].block.ids[r] for o, r in zip(all_owners.tolist(), all_rows.tolist(), strict=True)),
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
