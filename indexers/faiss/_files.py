"""The faiss index's file: what a snapshot saves (each block's rows, bitmap, HNSW graph and compact codes,
and the metadata groups), written atomically and durably, and read back into a new writer, block by block.

Layout: a magic line, then raw sections (vectors, serialized graphs), then a pickled header that says
where each section is (with a CRC-32 of each), then the header's offset and the magic again. Raw vectors
can thus be read in place (compact blocks' rows stay in the file), and a damaged graph is found before use.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import struct
import tempfile
import zlib
from typing import IO, Any

import faiss
import numpy as np

from ragflow.errors import IndexStoreError

from ._blocks import INITIAL_TAIL_ROWS, BlockView, FloatArray, IntArray, Rows, Snapshot, ceil8, live_rows
from ._compact import DiskRows, OpenFile, VectorFormat, flat_rows, graph_fits, graph_storage
from ._graph_files import new_stem
from ._groups import MetadataGroups
from ._transactions import BlockWriter, Transaction

FORMAT = "ragflow-faiss/2"
_FORMAT_1 = "ragflow-faiss/1"
_MAGIC = b"RAGFLOW-FAISS-2\n"
_TRAILER = struct.Struct("<Q16s")
_ALIGN = 64

_log = logging.getLogger(__package__)

Section = tuple[int, int, int]
"""Where a section is: offset, length in bytes, CRC-32."""


def save_snapshot(snapshot: Snapshot, dim: int, block_size: int, path: str) -> None:
    """Write ``snapshot`` to one file, atomically (a reader of ``path`` sees old or new)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_MAGIC)
                header = {
                    "format": FORMAT,
                    "dim": dim,
                    "block_size": block_size,
                    "groups": list(itertools.islice(snapshot.groups, snapshot.n_groups)),
                    "blocks": [_save_block(out, view) for view in snapshot.views],
                }
                offset = out.tell()
                pickle.dump(header, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.write(_TRAILER.pack(offset, _MAGIC))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        _fsync_directory(directory)
    except OSError as error:
        raise IndexStoreError(f"cannot save the index to {path!r}: {error}") from error


def _save_block(out: IO[bytes], view: BlockView) -> dict[str, Any]:
    block, used = view.block, view.used
    graph = block.hnsw
    return {
        "ids": block.ids[:used],
        "gids": block.gids[:used],
        "texts": block.texts[:used],
        "live": view.live[: (used + 7) // 8],
        "vectors": _write_section(out, np.ascontiguousarray(block.vectors[:used])),
        "graph": _write_section(out, faiss.serialize_index(graph)) if graph is not None else None,
    }


def _write_section(out: IO[bytes], data: np.ndarray[Any, Any]) -> Section:
    out.write(b"\0" * (-out.tell() % _ALIGN))
    offset = out.tell()
    view = memoryview(data.data).cast("B")
    out.write(view)
    return offset, len(view), zlib.crc32(view)


def load_snapshot(
    path: str, writer: BlockWriter, vectors: VectorFormat, keep_graphs: bool
) -> tuple[Snapshot, MetadataGroups]:
    """Fill a new, still private ``writer`` from the file at ``path``; ``keep_graphs`` adopts its saved
    HNSW graphs (those that fit ``vectors``); full blocks held as compact ``vectors`` keep their rows in
    the file, read when needed. A damaged or unfitting graph is logged and left out: the caller rebuilds it.

    Returns:
        The snapshot to publish and the metadata groups that go with it.

    Raises:
        IndexStoreError: the file is missing, unreadable, not an index file, damaged, or holds vectors
            of another dimension than ``writer``'s.
    """
    try:
        with open(path, "rb") as file:
            if file.read(len(_MAGIC)) == _MAGIC:
                file.seek(-_TRAILER.size, os.SEEK_END)
                offset, magic = _TRAILER.unpack(file.read(_TRAILER.size))
                if magic != _MAGIC:
                    raise ValueError("its end is missing (a truncated file)")
                file.seek(offset)
            else:
                file.seek(0)
            payload = pickle.load(file)
    except Exception as error:  # unpickling damaged bytes can raise almost anything
        raise IndexStoreError(f"cannot load the index from {path!r}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, _FORMAT_1):
        raise IndexStoreError(f"{path!r} is not a ragflow faiss index file (expected format {FORMAT})")
    if payload["dim"] != writer.dim:
        raise IndexStoreError(
            f"{path!r} holds {payload['dim']}-d vectors, this index holds {writer.dim}-d ones"
        )
    try:
        blocks = payload["blocks"]
        if payload["format"] == _FORMAT_1:
            blocks = [_version_1_block(saved) for saved in blocks]
        reader = _SectionReader(path, writer.dim)
        return _restore(payload, blocks, reader, writer, vectors, keep_graphs)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, OSError) as error:
        raise IndexStoreError(f"{path!r} is damaged: {type(error).__name__}: {error}") from error


class _SectionReader:
    """Reads a file's sections: vectors into memory or left on disk, graphs checked first."""

    def __init__(self, path: str, dim: int) -> None:
        self.path, self.dim = path, dim
        self._file: OpenFile | None = None

    def vectors(self, saved: Any) -> FloatArray:
        """A vectors section, read into memory."""
        if isinstance(saved, np.ndarray):  # format 1: in the pickle
            return saved
        offset, rows = self._section(saved)
        return np.fromfile(self.path, dtype=np.float32, count=rows * self.dim, offset=offset).reshape(
            rows, self.dim
        )

    def vectors_on_disk(self, saved: Any) -> Rows:
        """A vectors section left in the file, its rows read when needed (format 1: in memory)."""
        if isinstance(saved, np.ndarray):
            return saved
        offset, rows = self._section(saved)
        if self._file is None:
            self._file = OpenFile(self.path)  # one descriptor for all the file's blocks
        return DiskRows(self._file, rows, self.dim, offset)

    def _section(self, saved: Section) -> tuple[int, int]:
        offset, length, _ = saved
        rows = length // (4 * self.dim)
        if length != rows * 4 * self.dim:
            raise ValueError(f"a vectors section of {length} bytes does not hold whole {self.dim}-d rows")
        return offset, rows

    def index(self, saved: Any, what: str) -> Any:
        """The faiss index in a section, or None (logged) when it is damaged."""
        if isinstance(saved, np.ndarray):  # format 1: serialized in the pickle
            return faiss.deserialize_index(saved)
        offset, length, crc = saved
        data = np.fromfile(self.path, dtype=np.uint8, count=length, offset=offset)
        if len(data) != length or zlib.crc32(data.data) != crc:
            _log.warning("the %s saved in %s is damaged (checksum mismatch); it is rebuilt", what, self.path)
            return None
        try:
            return faiss.deserialize_index(data)
        except RuntimeError as error:
            _log.warning("the %s saved in %s cannot be read (%s); it is rebuilt", what, self.path, error)
            return None


def _version_1_block(saved: dict[str, Any]) -> dict[str, Any]:
    return {**saved, "graph": saved["hnsw"]}


def _restore(
    payload: dict[str, Any],
    blocks: list[dict[str, Any]],
    reader: _SectionReader,
    writer: BlockWriter,
    vectors: VectorFormat,
    keep_graphs: bool,
) -> tuple[Snapshot, MetadataGroups]:
    groups = MetadataGroups(payload["groups"])
    txn = Transaction(())
    same_layout = payload["block_size"] == writer.block_size
    for number, saved in enumerate(blocks):
        rows = live_rows(saved["live"], len(saved["ids"]))
        groups.count_live(saved["gids"][rows])
        if same_layout:
            _restore_block(writer, txn, saved, rows, reader, vectors, keep_graphs, number)
        else:
            texts = saved["texts"]
            writer.append(
                txn,
                reader.vectors(saved["vectors"])[rows],
                saved["ids"][rows],
                saved["gids"][rows],
                [texts[r] for r in rows],
            )
    groups.mark_unused_dead()
    groups.release_dead()
    return txn.commit(groups.values), groups


def _restore_block(
    writer: BlockWriter,
    txn: Transaction,
    saved: dict[str, Any],
    rows: IntArray,
    reader: _SectionReader,
    vectors: VectorFormat,
    keep_graphs: bool,
    number: int,
) -> None:
    block_size = writer.block_size
    used = len(saved["ids"])
    full = used == block_size
    capacity = block_size if full else max(INITIAL_TAIL_ROWS, ceil8(used))
    draft = writer.new_block(txn, min(capacity, block_size))
    block = draft.block
    graph = _saved_graph(saved, reader, vectors, number) if keep_graphs else None
    if full:
        block.stem = new_stem()
        # Adopt the loaded arrays instead of copying them: loading then peaks at one copy of the index.
        block.ids = np.require(saved["ids"], np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
        block.gids = np.require(saved["gids"], np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
        if vectors != "float32":
            block.vectors = reader.vectors_on_disk(saved["vectors"])
        elif graph is not None and graph.ntotal == used:
            block.vectors = flat_rows(graph)  # the graph holds the rows: one copy, not two
        else:
            block.vectors = reader.vectors(saved["vectors"])
    else:
        assert isinstance(block.vectors, np.ndarray)  # a new block's rows are in memory
        block.vectors[:used] = reader.vectors(saved["vectors"])
        block.ids[:used] = saved["ids"]
        block.gids[:used] = saved["gids"]
    if block.vectors.shape != (block.capacity, writer.dim) or len(saved["texts"]) != used:
        raise ValueError(f"a block of {used} ids has vectors of shape {block.vectors.shape}")
    if graph is not None:
        block.hnsw = graph
        block.codes = graph_storage(graph) if vectors != "float32" else None
    block.texts.extend(saved["texts"])
    draft.live[: len(saved["live"])] = saved["live"]
    draft.used, draft.n_live = used, len(rows)
    writer.register(block, rows)


def _saved_graph(saved: dict[str, Any], reader: _SectionReader, vectors: VectorFormat, number: int) -> Any:
    """A block's saved graph if it is intact and fits ``vectors``; None (logged when one was saved) else."""
    if saved["graph"] is None:
        return None
    graph = reader.index(saved["graph"], f"HNSW graph of block {number}")
    if graph is None:
        return None
    misfit = graph_fits(graph, vectors, len(saved["ids"]), reader.dim)
    if misfit is not None:
        _log.warning(
            "the HNSW graph of block %d in %s does not fit this index (%s); it is rebuilt",
            number,
            reader.path,
            misfit,
        )
        return None
    return graph


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; some filesystems refuse to open directories, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
