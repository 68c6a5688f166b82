"""``ragflow bench scale``: whether one change costs the same in a small and a large index. For each size,
an index of that many chunks is built in this process with a fast deterministic embedder (the model's cost
is not what is measured), then one-paragraph edits and deletes are timed from just before the write to the
moment the store made them searchable (its own ``indexed_at``, read in its epoch callback: no polling),
with the memory each chunk costs and the time a restart over the saved state takes to be ready. The curve
must stay flat."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._server import usage
from ._stats import Summary
from ._workload import ChangeKind, Workload

DIM = 384
"""The local model's dimension, so the index holds vectors of the real size."""


class FastEmbedder:
    """Deterministic pseudo-random unit vectors keyed by the text's digest: costs ~nothing per chunk."""

    model_id = "bench/fast-384"
    dim = DIM
    max_tokens = 128  # the local model's default chunk size

    def __init__(self) -> None:
        self.count = 0

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.count += len(texts)
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[row] = np.random.default_rng(seed).standard_normal(DIM)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@dataclass
class ScaleOptions:
    sizes: Sequence[int] = (1_000, 10_000, 100_000)
    """Indexed chunks to reach (documents of ~10 chunks each)."""
    changes: int = 20
    """Edits, and then deletes, timed at each size."""
    seed: int = 0
    progress: Callable[[str], None] = field(default=lambda message: None)


class _Searchable:
    """Tells when a document's new version became searchable, or when it was gone, from the store's epoch
    callback: no polling, so measuring costs the engine nothing at any index size. (It reads the store's
    document table directly: a per-document lookup the public API, built for listing, does not offer.)"""

    def __init__(self, store: Any) -> None:
        self.table = store._table  # bench only, as apps/bench/restart reads the store's checkpointer
        self.done = threading.Event()
        self.doc_id = ""
        self.written = 0.0
        self.gone = False
        self.at = 0.0
        store.on_update(self._check)

    def _check(self, report: Any) -> None:
        if not self.doc_id or self.done.is_set():
            return
        with self.table.lock:
            at = self.table.indexed_at.get(self.doc_id)
            held = self.doc_id in self.table.docs
        if self.gone and not held:
            self.at = time.time()
            self.done.set()
        elif not self.gone and at is not None and at >= self.written:
            self.at = at
            self.done.set()

    def arm(self, doc_id: str, gone: bool) -> None:
        """Watch ``doc_id`` from now (call it just before the write)."""
        self.done.clear()
        self.written, self.gone = time.time(), gone
        self.doc_id = doc_id

    def wait(self, timeout: float = 60.0) -> float:
        """Seconds from ``arm`` until the watched document is searchable in a newer version (or, ``gone``,
        no longer held)."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"{self.doc_id} did not change within {timeout:g} s")
        self.doc_id = ""
        return self.at - self.written


def measure_size(chunks: int, options: ScaleOptions) -> dict[str, Any]:
    from ragflow.plugins import load_connector
    from ragflow.store import DocumentStore

    FolderSource = load_connector("folder")  # by name: ragflow imports no concrete source

    workload = Workload(options.seed, words=(600, 680))
    with tempfile.TemporaryDirectory(prefix="ragflow-scale-") as tmp:
        folder, state = Path(tmp) / "docs", Path(tmp) / "state"
        folder.mkdir()
        docs = workload.initial(max(1, chunks // 10))
        for written_doc in docs:
            (folder / written_doc.name).write_text(written_doc.text)
        rss_before = usage(os.getpid())[0]
        store = DocumentStore(
            FolderSource(folder, reconcile_interval=None), embedder=FastEmbedder(), state_dir=state
        )
        started = time.perf_counter()
        store.start()
        if not store.wait_until_fresh(3600):
            raise TimeoutError(f"the first {len(docs)} documents were not indexed within an hour")
        initial = time.perf_counter() - started
        held = store.index.count()
        per_chunk = (usage(os.getpid())[0] - rss_before) / max(1, held)
        options.progress(f"{held:,} chunks indexed in {initial:.1f} s")
        searchable = _Searchable(store)
        edits: list[float] = []
        deletes: list[float] = []
        for kind, out in ((ChangeKind.EDIT, edits), (ChangeKind.DELETE, deletes)):
            for _ in range(options.changes):
                change = workload.change(kind, workload.pick())
                path = folder / change.doc
                searchable.arm(change.doc, gone=kind is ChangeKind.DELETE)
                if kind is ChangeKind.DELETE:
                    path.unlink()
                else:
                    path.write_text(workload.live[change.doc].text)
                out.append(searchable.wait())
                time.sleep(0.05)
        store.stop()
        started = time.perf_counter()
        again = DocumentStore(
            FolderSource(folder, reconcile_interval=None), embedder=FastEmbedder(), state_dir=state
        )
        again.start()
        again.wait_until_fresh(3600)
        restart = time.perf_counter() - started
        again.stop()
    return {
        "chunks": held,
        "documents": len(docs),
        "initial_s": initial,
        "memory_per_chunk_bytes": per_chunk,
        "edit_s": edits,
        "delete_s": deletes,
        "restart_s": restart,
    }


def run_scale(options: ScaleOptions) -> list[dict[str, Any]]:
    """One row per size, smallest first."""
    rows = []
    for size in sorted(options.sizes):
        options.progress(f"== {size:,} chunks")
        rows.append(measure_size(size, options))
    return rows


def scale_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "one change at a growing index (fast embedder: the system's own cost), from just before the write "
        "to searchable (edit) or gone (delete)",
        f"{'chunks':>10} {'edit p50':>9} {'edit p99':>9} {'delete p50':>10} {'delete p99':>10} "
        f"{'bytes/chunk':>11} {'restart':>8} {'initial':>8}",
    ]
    for row in rows:
        edit, delete = Summary.of(row["edit_s"]), Summary.of(row["delete_s"])
        lines.append(
            f"{row['chunks']:>10,} {edit.p50 * 1000:>7.1f}ms {edit.p99 * 1000:>7.1f}ms "
            f"{delete.p50 * 1000:>8.1f}ms {delete.p99 * 1000:>8.1f}ms "
            f"{row['memory_per_chunk_bytes']:>11,.0f} {row['restart_s']:>7.2f}s {row['initial_s']:>7.1f}s"
        )
    return "\n".join(lines)
