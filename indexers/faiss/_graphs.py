"""HNSW graphs of the faiss index: one per full block, built once (its rows never change again) in a
background thread or inline, and adopted by searches as soon as it is set."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import faiss

from ._blocks import Block

# The package's name, as when the index was one module: logging configuration keeps applying.
_log = logging.getLogger(__package__)


class GraphBuilder:
    """Builds the HNSW graph of each block it is given, unless the block is no longer stored by then.

    Args:
        dim, hnsw_m, ef_construction: the graphs' dimension, neighbours per node and build breadth.
        background: build in one background thread (else inside :meth:`schedule`).
        is_stored: whether the index still holds a block (compaction may drop it before its turn).
    """

    def __init__(
        self,
        dim: int,
        hnsw_m: int,
        ef_construction: int,
        background: bool,
        is_stored: Callable[[Block], bool],
    ) -> None:
        self.dim = dim
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.background = background
        self._is_stored = is_stored
        self._pool: ThreadPoolExecutor | None = None

    def schedule(self, block: Block) -> None:
        if not self.background:
            self._build(block)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss-hnsw")
        self._pool.submit(self._build, block).add_done_callback(_log_failure)

    def wait(self) -> None:
        """Block until every graph scheduled so far is built."""
        pool = self._pool
        if pool is not None:
            pool.submit(lambda: None).result()

    def close(self) -> None:
        """Stop the background thread, dropping graphs not started yet; a later schedule starts another."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _build(self, block: Block) -> None:
        if block.hnsw is not None or not self._is_stored(block):
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


def _log_failure(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        # The block stays searchable exactly; only its speed-up is lost.
        _log.error("building an HNSW graph failed; that block is searched exactly", exc_info=error)
