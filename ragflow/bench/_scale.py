"""``ragflow bench scale``: whether one change costs the same in a small and a large index. For each size,
an index of that many chunks is built in this process with a fast deterministic embedder (the model's cost
is not what is measured), then one-paragraph edits and deletes are timed from the write's return to the
moment the store made them searchable (its own ``_indexed_at``, no polling), with the memory each chunk
costs and the time a restart over the saved state takes to be ready. The curve must stay flat."""

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

from ._probe import quote_jmespath
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
    """Waits, through the store's epoch callback, until a document's version is searchable or gone."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.changed = threading.Condition()
        store.on_update(self._notify)

    def _notify(self, report: Any) -> None:
        with self.changed:
            self.changed.notify_all()

    def indexed_at(self, suffix: str) -> float | None:
        found = self.store.inputs(f"ends_with(path, {quote_jmespath(suffix)})", None, True)
        return float(found[0]["_indexed_at"]) if found and "_indexed_at" in found[0] else None

    def wait(self, suffix: str, written: float, gone: bool, timeout: float = 60.0) -> float:
        """Seconds from ``written`` (Unix time) until the document is searchable in a version newer than
        it (or, ``gone``, no longer held)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while time.monotonic() < deadline:
                at = self.indexed_at(suffix)
                if gone and at is None:
                    return time.time() - written
                if not gone and at is not None and at >= written:
                    return at - written
                self.changed.wait(0.05)
        raise TimeoutError(f"{suffix} did not change within {timeout:g} s")


def measure_size(chunks: int, options: ScaleOptions) -> dict[str, Any]:
    from ragflow.connectors.folder import FolderSource
    from ragflow.store import DocumentStore

    workload = Workload(options.seed, words=(950, 1050))
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
                if kind is ChangeKind.DELETE:
                    path.unlink()
                else:
                    path.write_text(workload.live[change.doc].text)
                written = time.time()
                out.append(searchable.wait("/" + change.doc, written, gone=kind is ChangeKind.DELETE))
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
        "one change at a growing index (fast embedder: the system's own cost), seconds from the write's "
        "return to searchable",
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
