"""How the faiss index's graphs hold vectors: float32 rows (a full block's rows then live only in its
graph), or compact float16 / 8-bit scalar-quantized codes, whose candidates are re-ranked exactly with the
full-precision rows, which full blocks keep in a file (``DiskRows``), read row by row when needed."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal

import faiss
import numpy as np

from ._blocks import Block, FloatArray, IntArray

VectorFormat = Literal["float32", "float16", "sq8"]
VECTOR_FORMATS: tuple[VectorFormat, ...] = ("float32", "float16", "sq8")

_QUANTIZERS = {"float16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
_FADVISE = hasattr(os, "posix_fadvise")
_PREFETCH_RUNS = 256
"""Reads of scattered rows requested together first when there are up to this many of them."""
_WILLNEED = getattr(os, "POSIX_FADV_WILLNEED", 3)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run faiss with one OpenMP thread in the calling thread (the setting is per thread).

    On a busy machine faiss's threads spin against each other and against searches: a 1024-node graph
    build measured 12x slower with 2 threads. Parallelism comes from building several blocks at once.
    """
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def new_graph(sample: FloatArray, fmt: VectorFormat, hnsw_m: int, ef_construction: int) -> Any:
    """An empty HNSW graph: ``IndexHNSWFlat`` for float32, ``IndexHNSWSQ`` over codes else (8-bit codes
    trained per dimension on ``sample``, the first rows it will hold; later rows outside their range are
    clipped, which the exact re-rank makes up for)."""
    dim = sample.shape[1]
    graph: Any
    if fmt == "float32":
        graph = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        quantizer: Any = _QUANTIZERS[fmt]  # an enum value, which faiss's stubs type as a class
        graph = faiss.IndexHNSWSQ(dim, quantizer, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.train(sample)
    graph.hnsw.efConstruction = ef_construction
    return graph


def graph_storage(graph: Any) -> Any:
    """The graph's own vector storage (``IndexFlat`` or ``IndexScalarQuantizer``); it lives as long as
    the graph does, so keep the graph referenced while using it."""
    return faiss.downcast_index(graph.storage)


def graph_fits(graph: Any, fmt: VectorFormat, rows: int, dim: int) -> str | None:
    """Why a loaded graph cannot serve a block of ``rows`` ``dim``-d vectors held as ``fmt`` (None: fits).
    A graph may cover fewer rows than its block has (the tail's): the rest are searched exactly."""
    if not isinstance(graph, faiss.IndexHNSW):
        return f"it is a {type(graph).__name__}, not an HNSW graph"
    if graph.d != dim or graph.ntotal > rows:
        return f"it holds {graph.ntotal} {graph.d}-d vectors, the block {rows} {dim}-d ones"
    storage = graph_storage(graph)
    if fmt == "float32":
        if not isinstance(storage, faiss.IndexFlat):
            return "it holds compact codes, the index float32 vectors"
    elif not isinstance(storage, faiss.IndexScalarQuantizer) or storage.sq.qtype != _QUANTIZERS[fmt]:
        return f"its vectors are not held as {fmt}"
    return None


def flat_rows(graph: Any) -> FloatArray:
    """The float32 rows inside an ``IndexHNSWFlat``, as an array sharing its memory (no second copy)."""
    storage = graph_storage(graph)
    n, dim = storage.ntotal, storage.d
    rows: FloatArray = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)
    return rows


class OpenFile:
    """A file open for reading, closed once nothing holds this object: the blocks of one saved index file
    share one descriptor."""

    __slots__ = ("__weakref__", "_close", "fd", "path")

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._close = weakref.finalize(self, os.close, self.fd)


class DiskRows:
    """A full compact block's full-precision rows in a file (a spilled block's own file, or a section of
    a saved index file), read with ``pread`` into private buffers.

    Not a memory map on purpose: every page of a map that a search touches (and the kernel maps up to
    64 KiB around each fault) stays in the process's resident set, so a compact index's RSS grew to the
    whole float32 file as queries re-ranked rows all over it. Read with ``pread``, only the few rows a
    query re-ranks pass through (the page cache keeps them warm, outside the process).

    Indexing (``rows[i]``, ``rows[a:b]``, ``rows[int_array]``) returns new in-memory arrays, like a
    memory map's fancy indexing did. The file stays open while this object lives, so the rows stay
    readable after the file is replaced or unlinked (a block being dropped, an index saved over its file).
    """

    __slots__ = ("_fd", "_file", "_row_bytes", "dim", "filename", "offset", "rows")
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | OpenFile, rows: int, dim: int, offset: int = 0) -> None:
        self._file = path if isinstance(path, OpenFile) else OpenFile(path)
        self._fd = self._file.fd
        self.filename = self._file.path
        self.rows, self.dim, self.offset = rows, dim, offset
        self._row_bytes = 4 * dim
        end = offset + rows * self._row_bytes
        if os.fstat(self._fd).st_size < end:
            raise ValueError(
                f"{self.filename} holds fewer than the {rows} {dim}-d rows expected at offset {offset}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.dim)

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, key: Any) -> FloatArray:
        if isinstance(key, slice):
            start, stop, stride = key.indices(self.rows)
            if stride != 1:
                return self.read(0, self.rows)[key]
            return self.read(start, max(start, stop))
        if isinstance(key, int | np.integer):
            row = int(key) + self.rows if key < 0 else int(key)
            if not 0 <= row < self.rows:
                raise IndexError(f"row {key} out of range for {self.rows} rows")
            return self.read(row, row + 1)[0]
        return self.take(np.asarray(key, dtype=np.int64))

    def read(self, start: int, stop: int) -> FloatArray:
        """Rows ``start..stop-1``, in one read."""
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        if stop > start:
            self._read_into(out.data.cast("B"), start)
        return out

    def read_into(self, row: int, out: FloatArray) -> None:
        """Row ``row`` into ``out`` (one contiguous row of float32)."""
        self._read_into(out.data.cast("B"), row)

    def prefetch(self, row: int) -> None:
        """Ask the kernel to start reading row ``row`` into the page cache, without waiting: a query's
        rows, prefetched first, then come from disk at once instead of one after the other."""
        self._prefetch(row, 1)

    def _prefetch(self, row: int, rows: int) -> None:
        if _FADVISE:
            position = self.offset + row * self._row_bytes
            os.posix_fadvise(self._fd, position, rows * self._row_bytes, _WILLNEED)

    def take(self, rows: IntArray) -> FloatArray:
        """The rows at ``rows`` (any shape and order, repeats allowed), each run of consecutive rows read
        at once."""
        flat = rows.reshape(-1)
        if not len(flat):
            return np.empty((*rows.shape, self.dim), dtype=np.float32)
        if int(flat.min()) < 0 or int(flat.max()) >= self.rows:
            raise IndexError(f"rows out of range for {self.rows} rows")
        ordered = bool((flat[1:] > flat[:-1]).all())
        wanted = flat if ordered else np.unique(flat)
        out = np.empty((len(wanted), self.dim), dtype=np.float32)
        # Runs of consecutive rows: one pread each (a compaction's or a restore's rows are mostly runs).
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        starts = [0, *breaks.tolist()]
        stops = [*breaks.tolist(), len(wanted)]
        buffer = out.data.cast("B")
        size = self._row_bytes
        firsts = wanted[starts].tolist()
        if len(starts) <= _PREFETCH_RUNS:  # scattered rows: their reads overlap when not cached
            for begin, end, row in zip(starts, stops, firsts, strict=True):
                self._prefetch(row, end - begin)
        for begin, end, row in zip(starts, stops, firsts, strict=True):
            self._read_into(buffer[begin * size : end * size], row)
        if not ordered:
            out = out[np.searchsorted(wanted, flat)]
        return out.reshape(*rows.shape, self.dim)

    def _read_into(self, buffer: memoryview, row: int) -> None:
        position = self.offset + row * self._row_bytes
        while len(buffer):
            got = os.preadv(self._fd, [buffer], position)
            if got <= 0:
                raise OSError(f"{self.filename} ended before the rows of this block (truncated?)")
            buffer, position = buffer[got:], position + got


class VectorFiles:
    """Where the full-precision rows of compact blocks live: one file per block, read with ``pread``.

    Args:
        directory: a folder to keep them in; none for a private temporary folder, removed with this object.
    """

    def __init__(self, directory: str | None) -> None:
        if directory is None:
            self.directory = tempfile.mkdtemp(prefix="ragflow-vectors-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, ignore_errors=True)
        else:
            os.makedirs(directory, exist_ok=True)
            self.directory = directory

    def spill(self, block: Block, stem: str) -> DiskRows:
        """Write ``block``'s rows to ``stem.f32`` and open it; the file goes when :meth:`drop` is called."""
        path = os.path.join(self.directory, stem + ".f32")
        rows = np.ascontiguousarray(block.vectors)
        rows.tofile(path)
        return DiskRows(path, *rows.shape)

    def drop(self, vectors: Any) -> None:
        """Delete the file behind ``vectors`` if this object spilled them (readers still holding it can
        read on); other arrays, a loaded index file's rows included, are left alone."""
        if (
            isinstance(vectors, DiskRows)
            and vectors.offset == 0
            and os.path.dirname(vectors.filename) == os.path.abspath(self.directory)
        ):
            with suppress(FileNotFoundError):
                os.unlink(vectors.filename)
