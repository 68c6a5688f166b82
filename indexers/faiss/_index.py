"""``FaissIndex``: the composition of block storage, metadata groups, transactions, the index file,
search and HNSW graph building into one :class:`~ragflow.documents.VectorIndex`."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ragflow.documents import Hit, VectorRecord
from ragflow.errors import ConfigError, IndexStoreError
from ragflow.filters import MetadataFilter

from ._blocks import ROW_MASK, Block, BlockView, Snapshot
from ._compact import VECTOR_FORMATS, DiskRows, VectorFiles, VectorFormat, flat_rows, graph_storage
from ._files import load_snapshot, save_snapshot
from ._graph_files import clear_graphs, delete_graph, read_graphs, write_graph
from ._graphs import GraphBuilder, covered_rows
from ._groups import MetadataGroups
from ._search import FilterMatches, Predicate, SearchSettings, search_snapshot
from ._transactions import BlockWriter, Transaction, checked_id, prepare_upserts

_log = logging.getLogger(__package__)


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
    """Full blocks still searched exactly while their graph is built (none while graphs are off)."""
    memory_bytes: int
    """Vectors, codes, ids, bitmaps and graphs held in memory; the on-disk full-precision rows of
    compact blocks, texts and metadata are not counted."""
    graphs: bool = False
    """Whether full blocks get HNSW graphs (``hnsw``, or ``auto`` past its threshold)."""


class FaissIndex:
    """A :class:`~ragflow.documents.VectorIndex` on faiss: cosine distance, exact while small and
    approximate (HNSW graphs on full blocks) once large, by default.

    Args:
        dim: the vectors' dimension.
        kind: ``"auto"`` (exact until the index holds ``hnsw_threshold`` chunks, then HNSW graphs on full
            blocks), ``"flat"`` (always exact) or ``"hnsw"`` (graphs on full blocks from the start).
        hnsw_threshold: with ``kind="auto"``, the number of chunks from which full blocks get graphs.
        hnsw_m: neighbours per HNSW node.
        ef_search: HNSW search breadth (raised to the candidates wanted when that is larger).
        ef_construction: HNSW build breadth.
        block_size: rows per block, a multiple of 8: the unit of compaction and of HNSW graphs.
        compact_fraction: rewrite a full block once more than this share of its rows is dead.
        background: build graphs and codes in background threads (else inside ``apply``).
        build_threads: how many full blocks are built at once in the background.
        vectors: how full blocks hold vectors for search: ``"float32"``, or compact ``"float16"`` /
            ``"sq8"`` (8-bit scalar-quantized) codes, with full blocks' full-precision rows in files, used
            to re-rank candidates exactly (read with ``pread``, never mapped: only the rows a query
            re-ranks pass through memory).
        rerank: compact vectors only: a query's best ``rerank * k`` candidates by their codes, over all
            blocks, are re-ranked with their full-precision rows.
        vector_dir: compact blocks only: the folder for their full-precision rows (default: a temporary
            folder, removed with the index).
        graph_dir: a folder where each full block's graph is kept once built (with its compact rows), so
            that a new index on it, refilled by a store's restore, adopts the graphs instead of rebuilding
            them: its rows come back when an upsert brings the same id and vector. Not with ``flat``.
            Unset, a store with a state directory gives the index its ``graphs`` folder
            (:meth:`keep_graphs_in`).
        keep_graphs: with ``graph_dir`` unset, whether :meth:`keep_graphs_in` takes the folder a store
            offers (``False``: graphs are rebuilt after every restart, and no disk is spent on them).

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

        Graphs and codes (``_graphs``, ``_compact``, ``_search``). A full block's rows never change, so it
        can get an HNSW graph (with ``hnsw``, or ``auto`` once the index is large) and compact codes, built
        in the background; until then, and for the tail, the block is searched exactly, so a switch never
        pauses queries. A float32 block's graph holds its rows (one copy, not two). Deletes and filters use
        the same bitmaps as selectors; when a selector leaves too few rows for a graph search to find k of
        them, that block is searched exactly.

        Filters (``_groups``, ``_search``). Chunks are grouped by their (interned) metadata, so a predicate
        runs once per distinct metadata, not per chunk; what a :class:`~ragflow.filters.MetadataFilter`
        matched is cached per group.
    """

    def __init__(
        self,
        dim: int,
        kind: Literal["auto", "flat", "hnsw"] = "auto",
        hnsw_threshold: int = 20000,
        hnsw_m: int = 16,
        ef_search: int = 64,
        ef_construction: int = 40,
        block_size: int = 65536,
        compact_fraction: float = 0.2,
        background: bool = True,
        build_threads: int = 1,
        vectors: Literal["float32", "float16", "sq8"] = "float32",
        rerank: int = 4,
        vector_dir: str | os.PathLike[str] | None = None,
        graph_dir: str | os.PathLike[str] | None = None,
        keep_graphs: bool = True,
    ) -> None:
        if dim <= 0:
            raise ConfigError(f"FaissIndex dim must be positive, got {dim}")
        if kind not in ("auto", "flat", "hnsw"):
            raise ConfigError(f"FaissIndex kind must be 'auto', 'flat' or 'hnsw', got {kind!r}")
        if block_size < 8 or block_size % 8 or block_size > ROW_MASK:
            raise ConfigError(f"FaissIndex block_size must be a positive multiple of 8, got {block_size}")
        if not 0 < compact_fraction < 1:
            raise ConfigError(f"FaissIndex compact_fraction must be in (0, 1), got {compact_fraction}")
        if min(hnsw_m, ef_search, ef_construction, build_threads, rerank) <= 0 or hnsw_threshold < 0:
            raise ConfigError(
                "FaissIndex hnsw_m, ef_search, ef_construction, build_threads and rerank must be positive "
                f"and hnsw_threshold not negative, got {hnsw_m}, {ef_search}, {ef_construction}, "
                f"{build_threads}, {rerank} and {hnsw_threshold}"
            )
        if vectors not in VECTOR_FORMATS:
            raise ConfigError(f"FaissIndex vectors must be 'float32', 'float16' or 'sq8', got {vectors!r}")
        self.dim = dim
        self.kind = kind
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ef_construction = ef_construction
        self.block_size = block_size
        self.compact_fraction = compact_fraction
        self.background = background
        self.vectors: VectorFormat = vectors
        self.vector_dir = os.fspath(vector_dir) if vector_dir is not None else None
        self._settings = SearchSettings(ef_search, rerank)
        self._graphs_on = kind == "hnsw"
        self._files: VectorFiles | None = None
        # Reentrant: with background=False graphs are built and published inside apply.
        self._write_lock = threading.RLock()
        # Writer state, guarded by _write_lock; searches read only self._snapshot.
        self._writer = BlockWriter(dim, block_size, compact_fraction)
        self._groups = MetadataGroups()
        self._matches = FilterMatches()
        self._graphs = GraphBuilder(
            hnsw_m,
            ef_construction,
            vectors,
            block_size,
            max(8, block_size // 16),
            background,
            build_threads,
            self._current,
            lambda: self._graphs_on,
            self._publish_graph,
            self._vector_files,
        )
        self._snapshot = Snapshot((), self._groups.values, 0, 0)
        self._appended_while_adopting = 0
        self.keep_graphs = keep_graphs
        self.graph_dir: str | None = None
        if graph_dir is not None and kind != "flat":
            self.graph_dir = os.fspath(graph_dir)
            self._adopt_saved_graphs()

    def keep_graphs_in(self, directory: str | os.PathLike[str], adopt: bool = True) -> bool:
        """Keep full blocks' graphs in ``directory`` from now on, as ``graph_dir`` would have; a store
        with a state directory calls it before its restore. ``adopt``: take the graphs the folder holds
        (for the restore to revive); ``False`` when the store restores nothing (a new or emptied state),
        whose graphs are stale: they are deleted.

        Does nothing (and says so by returning ``False``) where ``graph_dir`` was given, ``keep_graphs``
        is off, the index is ``flat``, or it already holds rows (adopted blocks must come first).
        """
        with self._write_lock:
            if self.graph_dir is not None or not self.keep_graphs or self.kind == "flat":
                return False
            if self._snapshot.views:
                _log.info("not keeping graphs in %s: the index already holds rows", directory)
                return False
            self.graph_dir = os.fspath(directory)
            if adopt:
                self._adopt_saved_graphs()
            else:
                os.makedirs(self.graph_dir, exist_ok=True)
                clear_graphs(self.graph_dir)
            return True

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
            before = self._snapshot
            txn = Transaction(before.views)
            groups.drop(writer.kill(txn, delete_ids))
            revived = None
            adopting = writer.dormant > 0
            if len(prepared.ids):
                groups.drop(writer.kill(txn, prepared.ids.tolist()))
                gids = groups.intern(prepared.keys, prepared.metadata)
                revived = writer.revive(txn, prepared.vectors, prepared.ids, gids, prepared.texts)
                if revived is None:
                    writer.append(txn, prepared.vectors, prepared.ids, gids, prepared.texts)
                else:
                    rest = np.flatnonzero(~revived)
                    texts = [prepared.texts[i] for i in rest.tolist()]
                    writer.append(txn, prepared.vectors[rest], prepared.ids[rest], gids[rest], texts)
            if adopting:
                self._appended_while_adopting += len(prepared.ids) - (
                    0 if revived is None else int(revived.sum())
                )
                # A restore revives rows batch after batch and appends less than a block (the tail, whose
                # graph was not kept); a delete, or more new rows than that, means it is over.
                if delete_ids or self._appended_while_adopting > self.block_size or not writer.dormant:
                    writer.end_adoption(txn)
            writer.compact(txn)
            groups.release_dead()
            self._snapshot = txn.commit(groups.values)
            self._forget_dropped(before, txn)
            self._switch_on_graphs()
            self._schedule_blocks(txn.sealed_numbers())

    def wait_for_graphs(self) -> None:
        """Block until every graph (and compact encoding) scheduled so far is built."""
        self._graphs.wait()

    def close(self) -> None:
        """Stop the background builder; the index stays searchable (exactly, where graphs are missing)."""
        self._graphs.close()

    def _current(self, number: int) -> BlockView | None:
        for view in self._snapshot.views:
            if view.block.number == number:
                return view
        return None

    def _publish_graph(self, number: int, extends: Any, graph: Any) -> bool:
        with self._write_lock:
            view = self._current(number)
            if view is None or view.block.hnsw is not extends:
                return False  # compacted away, reloaded, or extended by another build meanwhile
            block = view.block
            block.hnsw = graph
            complete = view.used == self.block_size and graph.ntotal == self.block_size
            if self.vectors != "float32":
                block.codes = graph_storage(graph)
            elif complete:
                block.vectors = flat_rows(graph)  # the graph holds the same rows: one copy, not two
        if complete and self.graph_dir is not None and block.stem is not None:
            write_graph(self.graph_dir, block.stem, block)
            if not self._is_stored(block):  # compacted away meanwhile: its files go too
                delete_graph(self.graph_dir, block.stem)
        return True

    def _is_stored(self, block: Block) -> bool:
        return any(view.block is block for view in self._snapshot.views)

    def _adopt_saved_graphs(self) -> None:
        """Take the graph files of ``graph_dir`` as dormant blocks, for a restore to revive."""
        assert self.graph_dir is not None
        os.makedirs(self.graph_dir, exist_ok=True)
        saved = read_graphs(self.graph_dir, self.block_size, self.dim, self.vectors)
        if not saved:
            return
        txn = Transaction(())
        for found in saved:
            codes = graph_storage(found.graph) if self.vectors != "float32" else None
            self._writer.adopt(txn, found.ids, found.vectors, found.graph, codes, found.stem)
        self._snapshot = txn.commit(self._groups.values)
        self._graphs_on = True
        _log.info("adopted %d saved HNSW graphs from %s", len(saved), self.graph_dir)

    def _switch_on_graphs(self) -> None:
        """Turn graphs on when an ``auto`` index reaches its threshold (from then on every block is
        brought up to date by the builder; they stay on if the index shrinks again)."""
        if not self._graphs_on and self.kind == "auto" and self._snapshot.count >= self.hnsw_threshold:
            self._graphs_on = True
            self._schedule_blocks(view.block.number for view in self._snapshot.views)

    def _schedule_blocks(self, numbers: Iterable[int]) -> None:
        """Give the builder the blocks of ``numbers`` and the tail (those with nothing to do are skipped)."""
        views = self._snapshot.views
        wanted = set(numbers)
        if views:
            wanted.add(views[-1].block.number)
        for view in views:
            if view.block.number in wanted:
                self._graphs.schedule(view)

    def _forget_dropped(self, before: Snapshot, txn: Transaction) -> None:
        """Delete the files (compact rows, saved graph) of blocks this apply compacted away."""
        if self._files is None and self.graph_dir is None:
            return
        kept = {id(view.block) for view in self._snapshot.views}
        for view in before.views:
            block = view.block
            if id(block) in kept:
                continue
            if self._files is not None:
                self._files.drop(block.vectors)
            if self.graph_dir is not None and block.stem is not None:
                delete_graph(self.graph_dir, block.stem)

    def _vector_files(self) -> VectorFiles:
        if self._files is None:
            # With graph_dir, compact rows go beside their graphs: a restart needs both.
            self._files = VectorFiles(self.graph_dir or self.vector_dir)
        return self._files

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
        return search_snapshot(
            snapshot, queries, k, match, self._settings, keep_match=isinstance(filter, MetadataFilter)
        )

    def stats(self) -> IndexStats:
        """Sizes of the current contents."""
        snapshot = self._snapshot
        memory = 0
        for view in snapshot.views:
            block = view.block
            memory += block.ids.nbytes + block.gids.nbytes + view.live.nbytes
            if not isinstance(block.vectors, DiskRows):
                memory += block.vectors.nbytes
            if block.codes is not None:
                memory += block.codes.sa_code_size() * block.codes.ntotal
            if block.hnsw is not None:
                # About 2*M neighbour ids per node on the bottom layer (its vectors are counted above).
                memory += view.used * 2 * self.hnsw_m * 4
        return IndexStats(
            count=snapshot.count,
            rows=sum(v.used for v in snapshot.views),
            blocks=len(snapshot.views),
            groups=self._groups.live_groups(),
            graphs_pending=sum(
                1
                for v in snapshot.views
                if self._graphs_on and v.used == self.block_size and covered_rows(v) < v.used
            ),
            memory_bytes=memory,
            graphs=self._graphs_on,
        )

    # ------------------------------------------------------------------------------ persistence

    def save(self, path: str) -> None:
        """Write the current contents, graphs and codes included, to one file, atomically (a reader of
        ``path`` sees old or new).

        The file's header is a pickle: load only files this index wrote.
        """
        save_snapshot(self._snapshot, self.dim, self.block_size, path)

    def load(self, path: str) -> None:
        """Replace the contents with those saved at ``path`` (atomically for readers). Saved graphs and
        codes that fit this index's configuration are adopted; a damaged or unfitting one is logged and
        rebuilt in the background, its block searched exactly meanwhile. Compact blocks' full-precision
        rows stay in the file, read when needed.

        Raises:
            IndexStoreError: the file is missing, unreadable, not an index file, damaged (beyond its
                graphs), or holds vectors of another dimension.
        """
        writer = BlockWriter(self.dim, self.block_size, self.compact_fraction)
        # An exact index never searches a graph: it does not adopt saved ones.
        snapshot, groups = load_snapshot(path, writer, self.vectors, keep_graphs=self.kind != "flat")
        with self._write_lock:
            self._writer, self._groups, self._snapshot = writer, groups, snapshot
            self._matches.clear()
            self._settings.cache.clear()
            self._graphs_on = self.kind == "hnsw" or any(v.block.hnsw is not None for v in snapshot.views)
            self._switch_on_graphs()
            self._schedule_blocks(view.block.number for view in snapshot.views)
