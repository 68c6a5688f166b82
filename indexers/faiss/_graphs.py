"""HNSW graphs of the faiss index, grown with the blocks: the tail's graph is extended by a copy every
``step`` new rows and completed when the block is full (a full block's rows never change again), in
background threads or inline; searches adopt each graph as soon as it is published. Full compact blocks
also move their full-precision rows to a file here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import faiss
import numpy as np

from ._blocks import BlockView
from ._compact import DiskRows, VectorFiles, VectorFormat, new_graph, one_thread
from ._graph_files import new_stem

# The package's name, as when the index was one module: logging configuration keeps applying.
_log = logging.getLogger(__package__)

Publish = Callable[[int, Any, Any], bool]
"""Set a block's graph (number, graph it extends or None, new graph), if the block and its graph are
still the ones the build started from; whether it did."""


class GraphBuilder:
    """Brings each block it is given up to date: a full compact block's rows moved to a file, and, while
    graphs are wanted, a graph over its rows (the tail's once ``step`` rows are not covered yet).

    In the background, rows go to their file in a thread of their own, ahead of the graph builds: writing
    a block's rows takes a fraction of a second, building its graph many, and a bulk load (a restore from
    the embedding cache) would otherwise hold every full block's float32 rows in memory until its graph
    was built.

    Args:
        hnsw_m, ef_construction: neighbours per node and build breadth of new graphs.
        vectors: how graphs hold vectors (``float32``, or compact ``float16`` / ``sq8`` codes).
        block_size: rows of a full block.
        step: how many uncovered rows of the tail make its graph worth extending.
        background: build in background threads (else inside :meth:`schedule`).
        threads: how many blocks are built at once in the background.
        current: the block of a number as the latest snapshot sees it (None once it is dropped).
        wants_graph: whether blocks should get graphs now (``auto`` turns them on at a size).
        publish: how a new graph is set on its block (under the index's writer lock).
        files: where full compact blocks' rows go.
    """

    def __init__(
        self,
        hnsw_m: int,
        ef_construction: int,
        vectors: VectorFormat,
        block_size: int,
        step: int,
        background: bool,
        threads: int,
        current: Callable[[int], BlockView | None],
        wants_graph: Callable[[], bool],
        publish: Publish,
        files: Callable[[], VectorFiles],
    ) -> None:
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.vectors = vectors
        self.block_size = block_size
        self.step = step
        self.background = background
        self.threads = threads
        self._current = current
        self._wants_graph = wants_graph
        self._publish = publish
        self._files = files
        self._pool: ThreadPoolExecutor | None = None
        self._spill_pool: ThreadPoolExecutor | None = None
        self._queued: set[int] = set()
        self._spills_queued: set[int] = set()
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._spill_lock = threading.Lock()

    def needs_work(self, view: BlockView) -> bool:
        """Whether a block lacks its rows on disk (full and compact) or graph rows (graphs wanted)."""
        if self._needs_spill(view):
            return True
        if not self._wants_graph():
            return False
        covered = covered_rows(view)
        return covered < view.used if view.used == self.block_size else view.used - covered >= self.step

    def _needs_spill(self, view: BlockView) -> bool:
        return (
            self.vectors != "float32"
            and view.used == self.block_size
            and not isinstance(view.block.vectors, DiskRows)
        )

    def schedule(self, view: BlockView) -> None:
        if not self.needs_work(view):
            return
        number = view.block.number
        if not self.background:
            self._work(number)
            return
        with self._lock:
            if self._needs_spill(view) and number not in self._spills_queued:
                self._spills_queued.add(number)
                if self._spill_pool is None:
                    self._spill_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faiss-rows")
                self._submit(self._spill_pool, self._spill_job, number)
            if number in self._queued:
                return  # its job has not started: it will see these rows too
            self._queued.add(number)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="faiss-hnsw")
            self._submit(self._pool, self._work, number)

    def _submit(self, pool: ThreadPoolExecutor, job: Callable[[int], None], number: int) -> None:
        """Run ``job(number)`` in ``pool``, tracked for :meth:`wait` (called holding ``_lock``)."""
        future = pool.submit(job, number)
        self._pending.add(future)
        future.add_done_callback(self._done)

    def wait(self) -> None:
        """Block until every build scheduled so far is done."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            if not future.cancelled():
                future.exception()  # waits; a failure was logged already

    def close(self) -> None:
        """Stop the background threads, dropping builds not started yet; a later schedule starts others."""
        with self._lock:
            pools = (self._pool, self._spill_pool)
            self._pool = self._spill_pool = None
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._pending = {f for f in self._pending if not f.done()}
            self._queued.clear()
            self._spills_queued.clear()

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
        _log_failure(future)

    def _spill_job(self, number: int) -> None:
        with self._lock:
            self._spills_queued.discard(number)
        view = self._current(number)
        if view is not None:
            self._spill(view)

    def _spill(self, view: BlockView) -> None:
        """Move a full compact block's rows to its file (once, whichever job comes first)."""
        with self._spill_lock:
            if self._needs_spill(view):
                block = view.block
                if block.stem is None:  # not given at seal time (an older caller): name it now
                    block.stem = new_stem()
                # A full block's rows never change: the copy on disk holds the same values for every reader.
                block.vectors = self._files().spill(block, block.stem)
                current = self._current(block.number)
                if current is None or current.block is not block:
                    self._files().drop(block.vectors)  # compacted away meanwhile: nobody deletes it else

    def _work(self, number: int) -> None:
        with self._lock:
            self._queued.discard(number)  # rows arriving from now on schedule another job
        view = self._current(number)
        if view is None:
            return  # compacted away before its turn
        block, used = view.block, view.used
        full = used == self.block_size
        self._spill(view)
        if not self._wants_graph():
            return
        graph = block.hnsw
        start = covered_rows(view)
        if used - start < (1 if full else self.step):
            return
        rows = np.ascontiguousarray(block.vectors[start:used])
        # Readers may be searching the current graph: extend a copy, then publish it.
        extended = faiss.clone_index(graph) if graph is not None else None
        with one_thread():
            if extended is None:
                extended = new_graph(rows, self.vectors, self.hnsw_m, self.ef_construction)
            extended.add(rows)
        if not self._publish(number, graph, extended):
            current = self._current(number)
            if current is not None:
                self.schedule(current)  # another build got there first: extend what it published


def covered_rows(view: BlockView) -> int:
    """How many of a block's first rows its graph covers."""
    graph = view.block.hnsw
    return 0 if graph is None else min(int(graph.ntotal), view.used)


def _log_failure(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        # The block stays searchable exactly; only its speed-up is lost.
        _log.error("building an HNSW graph failed; that block is searched exactly", exc_info=error)
