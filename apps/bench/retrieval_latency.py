"""The latency of each search mode at a size, in one run: vector, lexical and hybrid through the store's
``Retriever`` over the default faiss index (exact below 20k chunks, graphs above) and the lexical index.

    python -m apps.bench.retrieval_latency [--chunks 100000] [--manual DIR]

Chunks are ~150-word windows of the PostgreSQL 15 manual (``apps.bench.lexical``); vectors are random
(384-d, unit length), so the vector search costs what it would with real ones but ranks nothing; each
query's vector is made once beforehand, so the times are the search alone: add the query embedding
(~10-20 ms for the local model on this machine, docs/benchmarks.md) to vector and hybrid. A tenth of the
queries carry a filter on a metadata field that a quarter of the chunks have. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from apps.bench.lexical import corpus
from apps.bench.retrieval_quality import MANUAL, load_questions
from ragflow.documents import VectorRecord
from ragflow.filters import compile_filter
from ragflow.indexers.faiss import FaissIndex
from ragflow.retrieval import LexicalIndex, Retriever, SearchIndexes

DIM = 384


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--manual", type=Path, default=MANUAL)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)
    texts = corpus(args.manual, args.chunks)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(texts), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = [{"path": f"doc{i % 4}.html", "team": "a" if i % 4 == 0 else "b"} for i in range(4)]
    records = [VectorRecord(i, vectors[i], t, groups[i % 4]) for i, t in enumerate(texts)]
    vector_index = FaissIndex(DIM)
    indexes = SearchIndexes(vector_index, LexicalIndex())
    started = time.perf_counter()
    for start in range(0, len(records), 10_000):
        indexes.apply(records[start : start + 10_000], [])
    vector_index.wait_for_graphs()
    load = time.perf_counter() - started
    questions = [q.text for q in load_questions()]
    query_vectors = {q: v for q, v in zip(questions, _unit(rng, len(questions)), strict=True)}
    retriever = Retriever(
        indexes, query_vectors.__getitem__, lambda t: np.zeros((len(t), DIM), np.float32), lambda d: ()
    )
    team = compile_filter("team == 'a'", None)
    print(
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; {len(texts):,} chunks "
        f"loaded in {load:.0f} s (faiss graphs: {vector_index.stats().graphs}); "
        f"{len(questions)} queries, k={args.k}"
    )
    print()
    print("| mode | p50 ms | p95 ms | max ms |")
    print("|---|--:|--:|--:|")
    for mode in ("vector", "lexical", "hybrid"):
        for q in questions[:10]:  # warm
            retriever.retrieve(q, args.k, None, search_mode=mode)
        times = []
        for n, q in enumerate(questions):
            predicate = team if n % 10 == 0 else None
            t0 = time.perf_counter()
            retriever.retrieve(q, args.k, predicate, search_mode=mode)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        p50, p95 = times[len(times) // 2], times[int(len(times) * 0.95)]
        print(f"| {mode} | {p50:.1f} | {p95:.1f} | {times[-1]:.1f} |")


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


if __name__ == "__main__":
    main()
