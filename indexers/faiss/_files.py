"""The faiss index's file: what a snapshot saves (a versioned pickle of its blocks, bitmaps, groups and
graphs), written atomically and durably, and read back into a new writer, block by block."""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
from typing import Any

import faiss
import numpy as np

from ragflow.errors import IndexStoreError

from ._blocks import INITIAL_TAIL_ROWS, IntArray, Snapshot, ceil8, live_rows
from ._groups import MetadataGroups
from ._transactions import BlockWriter, Transaction

FORMAT = "ragflow-faiss/1"


def save_snapshot(snapshot: Snapshot, dim: int, block_size: int, path: str) -> None:
    """Write ``snapshot`` to one file, atomically (a reader of ``path`` sees old or new)."""
    payload = {
        "format": FORMAT,
        "dim": dim,
        "block_size": block_size,
        "groups": list(itertools.islice(snapshot.groups, snapshot.n_groups)),
        "blocks": [
            {
                "vectors": view.block.vectors[: view.used],
                "ids": view.block.ids[: view.used],
                "gids": view.block.gids[: view.used],
                "texts": view.block.texts[: view.used],
                "live": view.live[: (view.used + 7) // 8],
                "hnsw": faiss.serialize_index(view.block.hnsw) if view.block.hnsw is not None else None,
            }
            for view in snapshot.views
        ],
    }
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                pickle.dump(payload, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        _fsync_directory(directory)
    except OSError as error:
        raise IndexStoreError(f"cannot save the index to {path!r}: {error}") from error


def load_snapshot(path: str, writer: BlockWriter, keep_graphs: bool) -> tuple[Snapshot, MetadataGroups]:
    """Fill a new, still private ``writer`` from the file at ``path``; ``keep_graphs`` adopts its saved
    HNSW graphs.

    Returns:
        The snapshot to publish and the metadata groups that go with it.

    Raises:
        IndexStoreError: the file is missing, unreadable, not an index file, damaged, or holds vectors
            of another dimension than ``writer``'s.
    """
    try:
        with open(path, "rb") as file:
            payload = pickle.load(file)
    except Exception as error:  # unpickling damaged bytes can raise almost anything
        raise IndexStoreError(f"cannot load the index from {path!r}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise IndexStoreError(f"{path!r} is not a ragflow faiss index file (expected format {FORMAT})")
    if payload["dim"] != writer.dim:
        raise IndexStoreError(
            f"{path!r} holds {payload['dim']}-d vectors, this index holds {writer.dim}-d ones"
        )
    try:
        return _restore(payload, writer, keep_graphs)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
        raise IndexStoreError(f"{path!r} is damaged: {type(error).__name__}: {error}") from error


def _restore(
    payload: dict[str, Any], writer: BlockWriter, keep_graphs: bool
) -> tuple[Snapshot, MetadataGroups]:
    groups = MetadataGroups(payload["groups"])
    txn = Transaction(())
    same_layout = payload["block_size"] == writer.block_size
    for saved in payload["blocks"]:
        rows = live_rows(saved["live"], len(saved["ids"]))
        groups.count_live(saved["gids"][rows])
        if same_layout:
            _restore_block(writer, txn, saved, rows, keep_graphs)
        else:
            texts = saved["texts"]
            writer.append(
                txn,
                saved["vectors"][rows],
                saved["ids"][rows],
                saved["gids"][rows],
                [texts[r] for r in rows],
            )
    groups.mark_unused_dead()
    groups.release_dead()
    return txn.commit(groups.values), groups


def _restore_block(
    writer: BlockWriter, txn: Transaction, saved: dict[str, Any], rows: IntArray, keep_graphs: bool
) -> None:
    block_size = writer.block_size
    used = len(saved["ids"])
    capacity = block_size if used == block_size else max(INITIAL_TAIL_ROWS, ceil8(used))
    draft = writer.new_block(txn, min(capacity, block_size))
    block = draft.block
    if used == block.capacity:
        # Adopt the loaded arrays instead of copying them: loading then peaks at one copy of the index.
        block.vectors = np.require(saved["vectors"], np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        block.ids = np.require(saved["ids"], np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
        block.gids = np.require(saved["gids"], np.int64, ["C_CONTIGUOUS", "WRITEABLE"])
    else:
        block.vectors[:used] = saved["vectors"]
        block.ids[:used] = saved["ids"]
        block.gids[:used] = saved["gids"]
    if block.vectors.shape != (block.capacity, writer.dim) or len(saved["texts"]) != used:
        raise ValueError(f"a block of {used} ids has vectors of shape {saved['vectors'].shape}")
    block.texts.extend(saved["texts"])
    draft.live[: len(saved["live"])] = saved["live"]
    draft.used, draft.n_live = used, len(rows)
    if keep_graphs and saved["hnsw"] is not None:
        block.hnsw = faiss.deserialize_index(saved["hnsw"])
    writer.register(block, rows)


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
