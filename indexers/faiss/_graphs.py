"""What a full block of the faiss index gets once its rows never change again: compact codes (with its
full-precision rows moved to a memory-mapped file) and an HNSW graph, built in background threads or
inline, and adopted by searches as soon as each is set."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ._blocks import Block
from ._compact import VectorFiles, VectorFormat, built_graph, encoded, flat_rows, graph_storage

# The package's name, as when the index was one module: logging configuration keeps applying.
_log = logging.getLogger(__package__)


class GraphBuilder:
    """Gives each full block it is given what it still lacks, unless the block is no longer stored by then.

    Args:
        dim, hnsw_m, ef_construction: the graphs' dimension, neighbours per node and build breadth.
        vectors: how full blocks hold their vectors (``float32``, or compact ``float16`` / ``sq8`` codes).
        background: build in background threads (else inside :meth:`schedule`).
        threads: how many blocks are built at once in the background.
        is_stored: whether the index still holds a block (compaction may drop it before its turn).
        wants_graph: whether blocks should get graphs now (``auto`` turns them on at a size).
        files: where compact blocks' full-precision rows go.
    """

    def __init__(
        self,
        dim: int,
        hnsw_m: int,
        ef_construction: int,
        vectors: VectorFormat,
        background: bool,
        threads: int,
        is_stored: Callable[[Block], bool],
        wants_graph: Callable[[], bool],
        files: Callable[[], VectorFiles],
    ) -> None:
        self.dim = dim
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.vectors = vectors
        self.background = background
        self.threads = threads
        self._is_stored = is_stored
        self._wants_graph = wants_graph
        self._files = files
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def needs_work(self, block: Block) -> bool:
        """Whether a full block still lacks its codes or (when graphs are wanted) its graph."""
        if self.vectors != "float32" and block.codes is None:
            return True
        return block.hnsw is None and self._wants_graph()

    def schedule(self, block: Block) -> None:
        if not self.needs_work(block):
            return
        if not self.background:
            self._build(block)
            return
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="faiss-hnsw")
            future = self._pool.submit(self._build, block)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def pending(self) -> int:
        """Blocks scheduled and not built yet."""
        with self._lock:
            return len(self._pending)

    def wait(self) -> None:
        """Block until every block scheduled so far is built."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            if not future.cancelled():
                future.exception()  # waits; a failure was logged already

    def close(self) -> None:
        """Stop the background threads, dropping builds not started yet; a later schedule starts others."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._pending = {f for f in self._pending if not f.done()}

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        _log_failure(future)

    def _build(self, block: Block) -> None:
        if not self._is_stored(block):
            return  # compacted away before its turn
        fmt = self.vectors
        if fmt != "float32" and block.codes is None:
            # Codes first, then the mapped rows: every combination a reader may meet is a valid block.
            block.codes = encoded(block.vectors, fmt)
            block.vectors = self._files().spill(block)
        if block.hnsw is not None or not self._wants_graph():
            return
        graph = built_graph(block.vectors, fmt, self.hnsw_m, self.ef_construction)
        # The block's rows never change once it is full, so readers can start using the graph at once.
        block.hnsw = graph
        if fmt == "float32":
            block.vectors = flat_rows(graph)  # the graph holds the same rows: one copy, not two
        else:
            block.codes = graph_storage(graph)  # the same codes: the separate copy can go


def _log_failure(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        # The block stays searchable exactly; only its speed-up is lost.
        _log.error("building an HNSW graph failed; that block is searched exactly", exc_info=error)
