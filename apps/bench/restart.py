"""Benchmark of persistence: how long a restart over a saved state takes to be ready, against the initial
indexing it replaces; what a checkpoint costs; how big the state is.

    python -m apps.bench.restart [--chunks 10000 100000] [--real-sample 256] [--no-real-model]

For each size, a folder of generated prose documents (~10 chunks each) is indexed once with a fast
deterministic embedder (384-d, like the real model), which builds the state quickly; then a fresh store
over the same state directory is timed from construction to ``wait_until_fresh`` (restore + the folder
source's resume scan), three times. The initial-indexing time with the real model is estimated as
chunks / the real model's measured chunks-per-second on a sample of the same chunk texts (the model
dominates initial indexing). Reports Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

from ragflow.bench import FastEmbedder  # the scale benchmark's, shared
from ragflow.connectors.folder import FolderSource
from ragflow.persistence import (
    CACHE_FILE,
    STATE_FILE,
    CheckpointBatch,
    StateIdentity,
    describe_state,
    open_state,
)
from ragflow.store import DocumentStore

DIM = 384
MAX_TOKENS = 128  # the real model's default chunk size (LocalEmbedder.max_tokens)


def vocabulary() -> list[str]:
    """Words of the standard library's sources: real-looking prose without a data set."""
    root = Path(os.__file__).parent
    words: set[str] = set()
    for path in sorted(root.glob("*.py"))[:80]:
        words.update(re.findall(r"[a-z]{3,12}", path.read_text(encoding="utf-8", errors="ignore")))
    return sorted(words)


def write_corpus(folder: Path, documents: int, words: list[str], seed: int = 0) -> None:
    rng = random.Random(seed)
    for i in range(documents):
        paragraphs = [
            " ".join(rng.choice(words) for _ in range(rng.randint(60, 90))).capitalize() + "."
            for _ in range(10)
        ]
        sub = folder / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"doc{i:06d}.txt").write_text("\n\n".join(paragraphs) + "\n")


def real_model_rate(texts: list[str]) -> float | None:
    """Chunks per second of the local all-MiniLM-L6-v2 model on ``texts`` (after a warm-up)."""
    try:
        from ragflow.embedders.local import LocalEmbedder

        model = LocalEmbedder()
        model.embed(texts[:8])
    except Exception as exc:  # no model installed: report without the real-model ratio
        print(f"(the real model is not available: {exc})")
        return None
    started = time.perf_counter()
    for i in range(0, len(texts), 8):
        model.embed(texts[i : i + 8])
    return len(texts) / (time.perf_counter() - started)


INDEX_KIND = "flat"
"""The faiss index kind (``--index``): with ``hnsw`` (or ``auto`` past its threshold) a restore also
rebuilds the graphs, unless they are kept in the state directory (its ``graphs`` folder: the default;
``--no-keep-graphs`` turns it off)."""
KEEP_GRAPHS = True


def store_over(folder: Path, state: Path, embedder: FastEmbedder) -> DocumentStore:
    from ragflow.indexers.faiss import FaissIndex

    return DocumentStore(
        FolderSource(folder, reconcile_interval=None),
        embedder=embedder,
        state_dir=state,  # the store keeps the index's graphs in its "graphs" folder unless told not to
        index=FaissIndex(dim=DIM, kind=INDEX_KIND, keep_graphs=KEEP_GRAPHS),
    )


def bench_size(target_chunks: int, words: list[str], real_sample: int, use_real: bool) -> dict[str, float]:
    documents = max(1, target_chunks // 10)
    with tempfile.TemporaryDirectory(prefix="ragflow-restart-") as tmp:
        folder, state = Path(tmp) / "docs", Path(tmp) / "state"
        folder.mkdir()
        write_corpus(folder, documents, words)

        embedder = FastEmbedder()
        store = store_over(folder, state, embedder)
        started = time.perf_counter()
        store.start()
        assert store.wait_until_fresh(3600)
        initial_fast = time.perf_counter() - started
        checkpointer = store._checkpointer  # bench only: the store keeps its checkpointer private
        assert checkpointer is not None
        epochs = store.engine.epoch
        store.stop()
        chunks = store.index.count()
        write_ms = 1000 * checkpointer.write_seconds / max(1, checkpointer.checkpoints)
        checkpoints = checkpointer.checkpoints
        texts = [h.text for h in store.index.search(np.ones(DIM, dtype=np.float32), real_sample)]
        settle(store)
        del store

        restarts, constructs, graphs = [], [], []
        for _ in range(3):
            embedder = FastEmbedder()
            started = time.perf_counter()
            store = store_over(folder, state, embedder)
            constructed = time.perf_counter()
            store.start()
            assert store.wait_until_fresh(3600)
            restarts.append(time.perf_counter() - started)
            constructs.append(constructed - started)
            assert embedder.count == 0 and store.index.count() == chunks
            store.stop()
            graphs.append(settle(store) + restarts[-1])
            del store

        status = describe_state(state)
        state_bytes = (state / STATE_FILE).stat().st_size
        cache_bytes = (state / CACHE_FILE).stat().st_size
        one_doc_ms = checkpoint_write_ms(state, status)
        rate = real_model_rate(texts) if use_real else None
    restart = statistics.median(restarts)
    result = {
        "documents": documents,
        "chunks": chunks,
        "initial_fast": initial_fast,
        "restart": restart,
        "restart_min": min(restarts),
        "restart_max": max(restarts),
        "restore": statistics.median(constructs),
        "epochs": epochs,
        "checkpoints": checkpoints,
        "checkpoint_ms": write_ms,
        "one_doc_ms": one_doc_ms,
        "state_per_chunk": state_bytes / chunks,
        "cache_per_chunk": cache_bytes / chunks,
        "status_documents": status["documents"],
        "graphs": statistics.median(graphs),
    }
    if rate is not None:
        result["real_rate"] = rate
        result["initial_real"] = chunks / rate
    return result


def settle(store: DocumentStore) -> float:
    """Wait for the index's background HNSW graph builds (the index is searchable exactly meanwhile) and
    stop its builder, so that nothing of this store competes with what is timed next; returns the wait."""
    started = time.perf_counter()
    wait = getattr(store.index, "wait_for_graphs", None)
    if wait is not None:
        wait()
    close = getattr(store.index, "close", None)
    if close is not None:
        close()
    return time.perf_counter() - started


def checkpoint_write_ms(state: Path, status: dict[str, Any], writes: int = 50) -> float:
    """Median milliseconds of a one-document checkpoint (a typical live edit) into the full state."""
    identity = StateIdentity(status["model_id"], status["dim"], status["parser_id"])
    file, saved = open_state(state, identity)
    try:
        sample = saved.documents[:writes]
        times = []
        for i, document in enumerate(sample):
            started = time.perf_counter()
            file.write(CheckpointBatch(i + 1, {document.doc.row.doc_id: document}))
            times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)
    finally:
        file.close()


def report(results: list[dict[str, float]]) -> list[str]:
    lines = [
        "| Chunks (documents) | Initial indexing, fast embedder | Initial indexing, real model (estimated) "
        "| Restart to ready: median (min-max) | of which restore | Restart ÷ initial (real model) | Target |"
        " Met |",
        "| --: | --: | --: | --: | --: | --: | --: | :-: |",
    ]
    for r in results:
        real = r.get("initial_real")
        ratio = r["restart"] / real if real else None
        real_text = f"{real:,.0f} s at {r['real_rate']:.0f} chunks/s" if real else "n/a"
        ratio_text = f"{ratio:.2%}" if ratio is not None else "n/a"
        met = "?" if ratio is None else ("yes" if ratio <= 0.10 else "no")
        lines.append(
            f"| {r['chunks']:,.0f} ({r['documents']:,.0f}) | {r['initial_fast']:.1f} s | {real_text} "
            f"| {r['restart']:.2f} s ({r['restart_min']:.2f}-{r['restart_max']:.2f}) | {r['restore']:.2f} s "
            f"| {ratio_text} | ≤ 10% | {met} |"
        )
    if INDEX_KIND != "flat":
        how = "adopted from the state directory or built" if KEEP_GRAPHS else "rebuilt"
        lines.append("")
        lines += [
            f"- {r['chunks']:,.0f} chunks: searchable at ready (exactly where a graph is missing); every "
            f"HNSW graph {how} {r['graphs']:.1f} s after the restart began (median), in a background thread"
            for r in results
        ]
    lines += [
        "",
        "| Chunks | Epochs (initial) | Checkpoints written | Mean checkpoint write | One-document checkpoint "
        "| state.sqlite per chunk | embeddings.sqlite per chunk |",
        "| --: | --: | --: | --: | --: | --: | --: |",
    ]
    for r in results:
        cells = [
            f"{r['chunks']:,.0f}",
            f"{r['epochs']:.0f}",
            f"{r['checkpoints']:.0f}",
            f"{r['checkpoint_ms']:.1f} ms",
            f"{r['one_doc_ms']:.2f} ms",
            f"{r['state_per_chunk']:,.0f} B",
            f"{r['cache_per_chunk']:,.0f} B",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--real-sample", type=int, default=256, help="chunk texts timed with the real model")
    parser.add_argument("--no-real-model", action="store_true")
    parser.add_argument(
        "--index", choices=["flat", "hnsw", "auto"], default="flat", help="the faiss index kind"
    )
    parser.add_argument(
        "--keep-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep graphs in the state directory (the default; --no-keep-graphs rebuilds them)",
    )
    args = parser.parse_args(argv)
    global INDEX_KIND, KEEP_GRAPHS
    INDEX_KIND, KEEP_GRAPHS = args.index, args.keep_graphs
    load = os.getloadavg()
    print("## Restart (`python -m apps.bench.restart`)\n")
    print(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"- Machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {load[0]:.2f} at start")
    print(f"- Python: {platform.python_implementation()} {platform.python_version()}")
    print(f"- Index: faiss {INDEX_KIND}{', graphs kept in the state directory' if KEEP_GRAPHS else ''}\n")
    words = vocabulary()
    results = [bench_size(n, words, args.real_sample, not args.no_real_model) for n in args.chunks]
    for line in report(results):
        print(line)
    print(
        "\n*Restart to ready*: a new `DocumentStore` over the saved state, from construction (open + verify "
        "the state, load documents, read their vectors from the embedding cache, fill the index) to "
        "`wait_until_fresh()` (the folder source's resume scan found nothing to do). *Checkpoint write*: "
        "one commit of the changed documents, in the checkpointer's thread, off the indexing path; the "
        "one-document figure is a live edit's checkpoint against the full state."
    )


if __name__ == "__main__":
    main()
