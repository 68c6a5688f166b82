"""How full blocks of the faiss index hold their vectors for search: float32 rows (shared with the block's
HNSW graph when it has one), or compact float16 / 8-bit scalar-quantized codes whose full-precision rows are
written to a file and memory-mapped, read only to re-rank candidates exactly."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
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


def encoded(vectors: FloatArray, fmt: VectorFormat) -> Any:
    """An ``IndexScalarQuantizer`` holding ``vectors`` as ``fmt`` codes (8-bit: trained per dimension
    on these very vectors)."""
    codes = faiss.IndexScalarQuantizer(vectors.shape[1], _QUANTIZERS[fmt], faiss.METRIC_INNER_PRODUCT)
    with one_thread():
        codes.train(vectors)
        codes.add(vectors)
    return codes


def built_graph(vectors: FloatArray, fmt: VectorFormat, hnsw_m: int, ef_construction: int) -> Any:
    """An HNSW graph over ``vectors``: ``IndexHNSWFlat`` for float32, ``IndexHNSWSQ`` over codes else."""
    dim = vectors.shape[1]
    graph: Any
    if fmt == "float32":
        graph = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        quantizer: Any = _QUANTIZERS[fmt]  # an enum value, which faiss's stubs type as a class
        graph = faiss.IndexHNSWSQ(dim, quantizer, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = ef_construction
    with one_thread():
        if fmt != "float32":
            graph.train(vectors)
        graph.add(vectors)
    return graph


def graph_storage(graph: Any) -> Any:
    """The graph's own vector storage (``IndexFlat`` or ``IndexScalarQuantizer``); it lives as long as
    the graph does, so keep the graph referenced while using it."""
    return faiss.downcast_index(graph.storage)


def graph_fits(graph: Any, fmt: VectorFormat, rows: int, dim: int) -> str | None:
    """Why a loaded graph cannot serve a block of ``rows`` ``dim``-d vectors held as ``fmt`` (None: fits)."""
    if not isinstance(graph, faiss.IndexHNSW):
        return f"it is a {type(graph).__name__}, not an HNSW graph"
    if graph.d != dim or graph.ntotal != rows:
        return f"it holds {graph.ntotal} {graph.d}-d vectors, the block {rows} {dim}-d ones"
    storage = graph_storage(graph)
    if fmt == "float32":
        if not isinstance(storage, faiss.IndexFlat):
            return "it holds compact codes, the index float32 vectors"
    elif not isinstance(storage, faiss.IndexScalarQuantizer) or storage.sq.qtype != _QUANTIZERS[fmt]:
        return f"its vectors are not held as {fmt}"
    return None


def codes_fit(codes: Any, fmt: VectorFormat, rows: int, dim: int) -> bool:
    """Whether loaded codes hold ``rows`` ``dim``-d vectors as ``fmt``."""
    return bool(
        fmt != "float32"
        and isinstance(codes, faiss.IndexScalarQuantizer)
        and (codes.ntotal, codes.d, codes.sq.qtype) == (rows, dim, _QUANTIZERS[fmt])
    )


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

    def spill(self, block: Block) -> FloatArray:
        """Write ``block``'s rows to a new file and map it; the file goes when :meth:`drop` is called."""
        path = os.path.join(self.directory, f"block-{block.number}-{uuid.uuid4().hex}.f32")
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
