"""How the faiss index's graphs hold vectors: float32 rows (a full block's rows then live only in its
graph), or compact float16 / 8-bit scalar-quantized codes, whose candidates are re-ranked exactly with the
full-precision rows, which full blocks keep in a memory-mapped file."""

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

from ._blocks import Block, FloatArray

VectorFormat = Literal["float32", "float16", "sq8"]
VECTOR_FORMATS: tuple[VectorFormat, ...] = ("float32", "float16", "sq8")

_QUANTIZERS = {"float16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}


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


class VectorFiles:
    """Where the full-precision rows of compact blocks live: one file per block, memory-mapped read-only.

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

    def spill(self, block: Block, stem: str) -> FloatArray:
        """Write ``block``'s rows to ``stem.f32`` and map it; the file goes when :meth:`drop` is called."""
        path = os.path.join(self.directory, stem + ".f32")
        block.vectors.tofile(path)
        mapped: FloatArray = np.memmap(path, dtype=np.float32, mode="r", shape=block.vectors.shape)
        return mapped

    def drop(self, vectors: FloatArray) -> None:
        """Delete the file behind ``vectors`` if this object spilled them (readers still mapping it keep
        their pages); other arrays, a loaded index file's included, are left alone."""
        filename = getattr(vectors, "filename", None)
        if (
            isinstance(vectors, np.memmap)
            and isinstance(filename, str)
            and os.path.dirname(os.path.abspath(filename)) == os.path.abspath(self.directory)
        ):
            with suppress(FileNotFoundError):
                os.unlink(filename)
