"""Benchmark of the live document index (folder -> parse -> split -> embed -> faiss), real local model.

    python -m apps.bench.pipeline [--docs N] [--edits N] [--edit-words N] [--query-chunks N]
        [--precision auto|float32|bfloat16] [--batch-size N] [--skip-indexing] [--quick]
    python -m apps.bench.pipeline --against-float32 [--rounds N] [--edits N] [--edit-words N]
        [--query-chunks N]

Reports, as Markdown:
1. initial indexing throughput (chunks/s) next to the raw embedder's throughput on exactly the batches the
   pipeline made (same texts, grouping and order), alternating pipeline and raw runs: the ratio is the target;
   also the share of the pipeline's wall time spent inside the embedder (load-independent);
2. single-document edit -> searchable latency p50/p95 (a one-chunk file rewritten, timed from just before the
   write until the change is searchable), with the embedder's one-chunk time as the floor;
3. query latency (embed the query + search) over an index of N chunks.
With ``--against-float32``, only 2 and 3, for the calibrated plan and for float32 alternating in rounds.
The corpus is the docstrings of the Python standard library's modules (real prose, on every machine).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import numpy.typing as npt

from ragflow.connectors.folder import FolderSource
from ragflow.documents import VectorRecord
from ragflow.embedders.local import LocalEmbedder
from ragflow.engine import EpochReport
from ragflow.plugins import load_indexer
from ragflow.store import DocumentStore


def stdlib_corpus(limit: int) -> list[tuple[str, str]]:
    """``(name, docstring)`` of standard library modules with a substantial docstring, largest first."""
    root = Path(os.__file__).parent
    found = []
    for path in sorted(root.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if doc and len(doc) > 400:
            found.append((path.stem, doc))
    found.sort(key=lambda item: -len(item[1]))
    return found[:limit]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def write_corpus(folder: Path, corpus: list[tuple[str, str]]) -> None:
    for name, text in corpus:
        (folder / f"{name}.txt").write_text(text + "\n", encoding="utf-8")


class RecordingEmbedder:
    """Passes through to the real embedder, recording each batch and the time spent inside it."""

    def __init__(self, embedder: LocalEmbedder) -> None:
        self.inner = embedder
        self.batches: list[list[str]] = []
        self.seconds = 0.0

    model_id = property(lambda self: self.inner.model_id)
    dim = property(lambda self: self.inner.dim)
    max_tokens = property(lambda self: self.inner.max_tokens)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        vectors = self.inner.embed(texts)
        self.seconds += time.perf_counter() - started
        self.batches.append(list(texts))
        return vectors


def raw_seconds(embedder: LocalEmbedder, batches: list[list[str]]) -> tuple[float, float]:
    """Wall and process-CPU seconds of the embedder alone on exactly the pipeline's batches."""
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        embedder.embed(batch)
    return time.perf_counter() - started, time.process_time() - cpu


def pipeline_run(embedder: LocalEmbedder, folder: Path) -> tuple[float, float, RecordingEmbedder]:
    recording = RecordingEmbedder(embedder)
    store = DocumentStore(FolderSource(folder, reconcile_interval=None), embedder=recording)
    started, cpu = time.perf_counter(), time.process_time()
    store.run_static()
    return time.perf_counter() - started, time.process_time() - cpu, recording


def bench_indexing(embedder: LocalEmbedder, docs: int, rounds: int = 3) -> list[str]:
    corpus = stdlib_corpus(docs)
    ratios, cpu_ratios, pipe_rates, raw_rates, inside = [], [], [], [], []
    chunks = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_corpus(folder, corpus)
        for _ in range(rounds):  # alternate pipeline and raw so both see the same machine load
            wall, cpu, recording = pipeline_run(embedder, folder)
            raw, raw_cpu = raw_seconds(embedder, recording.batches)
            chunks = sum(len(b) for b in recording.batches)
            ratios.append(raw / wall)
            cpu_ratios.append(raw_cpu / cpu)
            pipe_rates.append(chunks / wall)
            raw_rates.append(chunks / raw)
            inside.append(recording.seconds / wall)
    return [
        f"| initial indexing, {len(corpus)} documents / {chunks} chunks, {rounds} alternating rounds | "
        f"pipeline {statistics.median(pipe_rates):.1f} chunks/s | raw embedder on the same batches "
        f"{statistics.median(raw_rates):.1f} chunks/s | wall-time ratio {statistics.median(ratios):.0%} "
        f"(range {min(ratios):.0%}-{max(ratios):.0%}), CPU-time ratio {statistics.median(cpu_ratios):.0%} "
        f"(range {min(cpu_ratios):.0%}-{max(cpu_ratios):.0%}); target >= 90%; "
        f"{statistics.median(inside):.1%} of pipeline wall time is inside the embedder |"
    ]


def bench_edits(embedder: LocalEmbedder, edits: int, words: int = 60) -> list[str]:
    ms, floor = edit_latencies(embedder, edits, words)
    document = "one-chunk document" if words <= 60 else f"{words}-word document rewritten whole"
    return [
        f"| edit -> searchable, {document}, {edits} edits | p50 {percentile(ms, 0.5):.0f} ms | "
        f"p95 {percentile(ms, 0.95):.0f} ms | embedder floor (1 chunk) {floor:.0f} ms "
        f"(target p50 <= {150 if words <= 60 else 100} ms) |"
    ]


def edit_latencies(
    embedder: LocalEmbedder, edits: int, words: int, seed: int = 1
) -> tuple[list[float], float]:
    """Write -> searchable of ``edits`` rewrites of a ``words``-word document (ms), and the embedder's
    one-chunk time (ms, median of 10)."""
    rng = random.Random(seed)
    corpus = stdlib_corpus(40)
    single = embedder.embed(["warm up"])  # noqa: F841 - model loaded before timing
    one_chunk = []
    sample = corpus[0][1][:600]
    for _ in range(10):
        started = time.perf_counter()
        embedder.embed([sample + str(rng.random())])
        one_chunk.append(time.perf_counter() - started)
    latencies = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_corpus(folder, corpus[:20])
        store = DocumentStore(FolderSource(folder, reconcile_interval=None), embedder=embedder)
        indexed = threading.Condition()
        seen: dict[str, float] = {}

        def on_update(report: EpochReport) -> None:
            with indexed:
                for status in store.documents():
                    if status.indexed_at:
                        seen[status.doc_id] = status.indexed_at
                indexed.notify_all()

        store.on_update(on_update)
        with store:
            store.wait_until_fresh(600)
            target = folder / "edited.txt"
            for i in range(edits):
                vocabulary = corpus[1][1].split()
                picked = (
                    rng.sample(vocabulary, words)
                    if words <= len(vocabulary)
                    else rng.choices(vocabulary, k=words)
                )
                text = f"Edit number {i}: " + " ".join(picked)
                with indexed:
                    seen.pop("edited.txt", None)
                started = time.time()
                target.write_text(text)
                with indexed:

                    def searchable(since: float = started) -> bool:
                        return seen.get("edited.txt", 0) >= since

                    ok = indexed.wait_for(searchable, 10)
                if not ok:
                    raise RuntimeError(f"edit {i} was not searchable within 10 s")
                hits = store.retrieve(text, k=1)
                assert hits and hits[0].metadata["doc_id"] == "edited.txt", (
                    "the edit is not what a query finds"
                )
                latencies.append(seen["edited.txt"] - started)
                time.sleep(0.2)
    return [x * 1000 for x in latencies], statistics.median(one_chunk) * 1000


def bench_queries(embedder: LocalEmbedder, chunks: int, queries: int) -> list[str]:
    times, filtered = query_latencies(embedder, chunks, queries)
    return [
        f"| query (embed + top-10 search), {chunks:,} chunks | p50 {percentile(times, 0.5):.0f} ms | "
        f"p95 {percentile(times, 0.95):.0f} ms | with a glob filter: p50 {percentile(filtered, 0.5):.0f} ms |"
    ]


def query_latencies(embedder: LocalEmbedder, chunks: int, queries: int) -> tuple[list[float], list[float]]:
    """``store.retrieve`` times (ms) over an index of ``chunks`` random vectors: plain, and with a glob."""
    index = load_indexer("faiss")(dim=embedder.dim)
    rng = np.random.default_rng(0)
    for start in range(0, chunks, 50_000):
        n = min(50_000, chunks - start)
        vectors = rng.standard_normal((n, embedder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index.apply(
            [
                VectorRecord(
                    start + i, vectors[i], f"chunk {start + i}", {"path": f"/d/{(start + i) // 20}.txt"}
                )
                for i in range(n)
            ],
            [],
        )
    with tempfile.TemporaryDirectory() as tmp:
        store = DocumentStore(FolderSource(tmp, reconcile_interval=None), embedder=embedder, index=index)
        words = " ".join(doc for _, doc in stdlib_corpus(5)).split()
        store.retrieve("warm up", k=10)
        times, filtered = [], []
        for _ in range(queries):
            query = " ".join(random.sample(words, 8))
            started = time.perf_counter()
            store.retrieve(query, k=10)
            times.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            store.retrieve(query, k=10, filepath_globpattern="/d/1*.txt")
            filtered.append((time.perf_counter() - started) * 1000)
    return times, filtered


def bench_against_float32(args: argparse.Namespace) -> list[str]:
    """Edit -> searchable and query latency of the calibrated plan and of float32, alternating in rounds
    (each round: one block of edits and one of queries per path), so a changing load hits both. Each
    block runs in a process of its own, as a user's server would: two models in one process slowed the
    calibrated path's edits by ~20 ms here (2026-12-07, AMX Xeon), which no user sees."""
    names = ("calibrated", "float32")
    edits: dict[str, list[float]] = {name: [] for name in names}
    queries: dict[str, list[float]] = {name: [] for name in names}
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    plans: dict[str, str] = {}
    for round_number in range(args.rounds):
        for name in names:
            block = _arm_in_child(args, name, round_number)
            edits[name] += block["edits"]
            queries[name] += block["queries"]
            plans[name] = block["plan"]
            rounds[name].append((percentile(block["edits"], 0.5), percentile(block["queries"], 0.5)))
            print(
                f"<!-- round {round_number + 1} {name}: edit p50 {rounds[name][-1][0]:.0f} ms, query p50 "
                f"{rounds[name][-1][1]:.1f} ms, load {os.getloadavg()[0]:.1f} -->",
                flush=True,
            )
    lines = [
        f"| path | edit -> searchable p50 ({args.edit_words} words, {args.rounds}x{args.edits} edits) "
        "| p95 | "
        f"per-round p50s | query p50 ({args.query_chunks:,} chunks) | per-round query p50s |",
        "|---|--:|--:|---|--:|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} ({plans[name]}) | "
            f"{percentile(edits[name], 0.5):.0f} ms | {percentile(edits[name], 0.95):.0f} ms | "
            f"{', '.join(f'{e:.0f}' for e, _ in rounds[name])} | {percentile(queries[name], 0.5):.1f} ms | "
            f"{', '.join(f'{q:.1f}' for _, q in rounds[name])} |"
        )
    return lines


def _arm_in_child(args: argparse.Namespace, name: str, round_number: int) -> dict[str, Any]:
    """One block of edits and queries of one path, measured in a new process (``--arm``)."""
    command = [
        sys.executable,
        "-m",
        "apps.bench.pipeline",
        "--arm",
        name,
        "--seed",
        str(round_number),
        "--edits",
        str(args.edits),
        "--edit-words",
        str(args.edit_words),
        "--query-chunks",
        str(args.query_chunks),
    ]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {name} block failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_arm(args: argparse.Namespace) -> int:
    """``--arm``: one path's block of edits and queries, printed as one line of JSON."""
    precision = "auto" if args.arm == "calibrated" else args.arm
    embedder = LocalEmbedder(batch_size=args.batch_size, precision=precision)
    embedder.embed(["load the model before timing anything"])
    ms, _ = edit_latencies(embedder, args.edits, args.edit_words, seed=args.seed)
    times, _ = query_latencies(embedder, args.query_chunks, 50)
    plan = embedder.plan
    about = f"batches of {plan.batch_size} in {plan.bulk}, one text in {plan.single}"
    print(json.dumps({"edits": ms, "queries": times, "plan": about}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=60, help="documents for the indexing run")
    parser.add_argument("--edits", type=int, default=30, help="edits for the latency run")
    parser.add_argument("--query-chunks", type=int, default=100_000, help="index size for query latency")
    parser.add_argument("--edit-words", type=int, default=60, help="words of the edited document")
    parser.add_argument("--precision", default="auto", help="the embedder's precision (auto, float32...)")
    parser.add_argument("--batch-size", type=int, help="the embedder's batch size (default: calibrated)")
    parser.add_argument("--skip-indexing", action="store_true", help="only edits and queries")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--against-float32",
        action="store_true",
        help="only edits and queries: the calibrated plan and float32 alternating, --rounds rounds",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds for --against-float32")
    parser.add_argument("--arm", choices=("calibrated", "float32"), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        return run_arm(args)
    if args.quick:
        args.docs, args.edits, args.query_chunks = 8, 5, 10_000
    if args.against_float32:
        print(
            "# ragflow edit and query latency, calibrated against float32, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, "
            f"{os.cpu_count()} cores, load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        )
        for line in bench_against_float32(args):
            print(line, flush=True)
        return 0
    embedder = LocalEmbedder(batch_size=args.batch_size, precision=args.precision)
    embedder.embed(["load the model before timing anything"])
    plan = embedder.plan
    print(
        f"# ragflow pipeline benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, model {embedder.model_id}, batches of {plan.batch_size} in "
        f"{plan.bulk}, one text in {plan.single}\n"
    )
    print("| measurement | result | baseline | notes |\n|---|---|---|---|")
    if not args.skip_indexing:
        for line in bench_indexing(embedder, args.docs):
            print(line, flush=True)
    for line in bench_edits(embedder, args.edits, args.edit_words):
        print(line, flush=True)
    for line in bench_queries(embedder, args.query_chunks, 50):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
