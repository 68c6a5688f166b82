"""Graphs kept in a folder across restarts (``graph_dir``): one file per full block, holding its chunk ids
and its complete HNSW graph, written once the graph is built and deleted with the block. A new index on the
folder adopts them as *dormant* blocks: their rows are invisible until an upsert brings the same id with
the same vector (what a store's restore does), which revives the row in place, graph and all."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from ._blocks import Block, IntArray, Rows
from ._compact import DiskRows, VectorFormat, flat_rows, graph_fits

FORMAT = "ragflow-faiss-graph/1"
SUFFIX = ".graph"
VECTORS_SUFFIX = ".f32"
"""Compact blocks' full-precision rows, beside their graph (written by ``VectorFiles`` in the same folder)."""

_log = logging.getLogger(__package__)


@dataclass(frozen=True, slots=True)
class SavedGraph:
    """A full block as its graph file describes it."""

    stem: str
    ids: IntArray
    vectors: Rows
    graph: Any


def write_graph(directory: str, stem: str, block: Block) -> None:
    """Write ``block``'s ids and graph to ``directory/stem.graph`` atomically (temp file, then rename)."""
    data = faiss.serialize_index(block.hnsw)
    header = {"format": FORMAT, "ids": block.ids, "length": len(data), "crc": zlib.crc32(data.data)}
    fd, tmp = tempfile.mkstemp(prefix=stem, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            pickle.dump(header, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.write(data.data)
        os.replace(tmp, os.path.join(directory, stem + SUFFIX))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def new_stem() -> str:
    return f"block-{uuid.uuid4().hex}"


def delete_graph(directory: str, stem: str) -> None:
    for suffix in (SUFFIX, VECTORS_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, stem + suffix))


def clear_graphs(directory: str) -> None:
    """Delete every block's files (graph and full-precision rows) in ``directory``."""
    for name in os.listdir(directory):
        if name.endswith((SUFFIX, VECTORS_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))


def read_graphs(directory: str, block_size: int, dim: int, fmt: VectorFormat) -> list[SavedGraph]:
    """The intact graph files in ``directory`` that fit this index; others are logged and deleted (their
    blocks are rebuilt from the rows the store brings back)."""
    saved = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(SUFFIX):
            continue
        stem = name[: -len(SUFFIX)]
        try:
            found = _read_graph(directory, stem, block_size, dim, fmt)
        except Exception as error:  # a damaged pickle or graph can raise almost anything
            found = f"{type(error).__name__}: {error}"
        if isinstance(found, str):
            _log.warning(
                "the graph file %s in %s is not used (%s); its block is rebuilt", name, directory, found
            )
            delete_graph(directory, stem)
        else:
            saved.append(found)
    return saved


def _read_graph(directory: str, stem: str, block_size: int, dim: int, fmt: VectorFormat) -> SavedGraph | str:
    with open(os.path.join(directory, stem + SUFFIX), "rb") as file:
        header = pickle.load(file)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return "not a ragflow graph file"
        data = np.frombuffer(file.read(), dtype=np.uint8)
    ids = np.asarray(header["ids"], dtype=np.int64)
    if len(data) != header["length"] or zlib.crc32(data.data) != header["crc"]:
        return "damaged: checksum mismatch"
    if len(ids) != block_size:
        return f"a block of {len(ids)} rows, this index's blocks hold {block_size}"
    graph = faiss.deserialize_index(data)
    misfit = graph_fits(graph, fmt, block_size, dim)
    if misfit is not None or graph.ntotal != block_size:
        return misfit or f"its graph covers {graph.ntotal} of {block_size} rows"
    if fmt == "float32":
        vectors: Rows = flat_rows(graph)
    else:
        path = os.path.join(directory, stem + VECTORS_SUFFIX)
        if not os.path.exists(path) or os.path.getsize(path) != block_size * dim * 4:
            return f"its full-precision rows ({stem + VECTORS_SUFFIX}) are missing or damaged"
        vectors = DiskRows(path, block_size, dim)
    return SavedGraph(stem, ids, vectors, graph)
