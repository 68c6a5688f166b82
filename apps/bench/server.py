"""Benchmark of the REST API: ``POST /v1/retrieve`` latency through a real uvicorn server, over an index
prefilled with N random chunks, alone and while the index ingests changes; printed as Markdown.

    python -m apps.bench.server [--chunks 10000,100000] [--queries 200] [--embedder local|hashing]
                                [--edit-interval 0.5] [--quick]

Each size reports p50/p99 of sequential requests on one keep-alive connection (the client runs in the same
process, on the same 2 cores), next to the same query made in-process (``store.retrieve``: embedding +
search), so the difference is the HTTP cost. "While ingesting" rewrites a document of the watched folder
every 0.5 s (``--edit-interval``) during the measurement, so the engine parses, embeds and applies
changes on the same CPUs.
Target: p50 <= 50 ms at 100k chunks with the local model.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import requests
import uvicorn

from ragflow.connectors.folder import FolderSource
from ragflow.documents import Embedder, VectorIndex, VectorRecord
from ragflow.plugins import load_indexer
from ragflow.server import create_app
from ragflow.store import DocumentStore

WORDS = (
    "index query vector latency stream engine document folder change epoch search filter answer model "
    "server client request response harbor lantern falcon meadow orbit report revenue quarry river"
).split()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prefilled_index(dim: int, chunks: int) -> VectorIndex:
    """A faiss index holding ``chunks`` random unit vectors, 20 per fake document."""
    index: VectorIndex = load_indexer("faiss")(dim=dim)
    rng = np.random.default_rng(0)
    for start in range(0, chunks, 50_000):
        n = min(50_000, chunks - start)
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            VectorRecord(start + i, vectors[i], f"chunk {start + i}", {"path": f"/d/{(start + i) // 20}.txt"})
            for i in range(n)
        ]
        index.apply(records, [])
    return index


@contextmanager
def served(store: DocumentStore) -> Iterator[str]:
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP (as uvicorn's own are)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def ingesting(folder: Path, rng: random.Random, interval: float) -> Iterator[list[int]]:
    """Rewrite a document of ``folder`` every ``interval`` seconds until the block ends; yields the count
    of writes."""
    stop = threading.Event()
    writes = [0]

    def write() -> None:
        while not stop.wait(interval):
            name = folder / f"live{writes[0] % 20}.txt"
            name.write_text(" ".join(rng.choice(WORDS) for _ in range(400)) + "\n")
            writes[0] += 1

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield writes
    finally:
        stop.set()
        thread.join()


def measure(
    url: str, store: DocumentStore, queries: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """Milliseconds per HTTP request and per in-process retrieve, alternating, same queries."""
    http, direct = [], []
    with requests.Session() as session:
        for i in range(queries + 5):
            query = " ".join(rng.sample(WORDS, 6)) + f" {i}"
            started = time.perf_counter()
            response = session.post(url + "/v1/retrieve", json={"query": query, "k": 10}, timeout=30)
            took = (time.perf_counter() - started) * 1000
            assert response.status_code == 200 and len(response.json()) == 10, response.text[:200]
            started = time.perf_counter()
            store.retrieve(query + " again", k=10)
            direct_took = (time.perf_counter() - started) * 1000
            if i >= 5:  # warm-up
                http.append(took)
                direct.append(direct_took)
    return http, direct


def row(label: str, http: list[float], direct: list[float]) -> str:
    return (
        f"| {label} | p50 {percentile(http, 0.5):.1f} ms | p99 {percentile(http, 0.99):.1f} ms | "
        f"in-process p50 {statistics.median(direct):.1f} ms | HTTP cost p50 "
        f"{percentile(http, 0.5) - statistics.median(direct):.1f} ms |"
    )


def bench(embedder: Embedder, chunks: int, queries: int, interval: float) -> list[str]:
    rng = random.Random(chunks)
    index = prefilled_index(embedder.dim, chunks)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(20):
            (folder / f"live{i}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(400)) + "\n")
        store = DocumentStore(FolderSource(folder, reconcile_interval=None), embedder=embedder, index=index)
        with store, served(store) as url:
            assert store.wait_until_fresh(300)
            http, direct = measure(url, store, queries, rng)
            lines.append(row(f"/v1/retrieve k=10, {chunks:,} chunks, idle", http, direct))
            epochs_before = store.engine.epoch
            embedded_before = store.embedding_stats()["computed"]
            started = time.monotonic()
            with ingesting(folder, rng, interval) as writes:
                http, direct = measure(url, store, queries, rng)
            took = time.monotonic() - started
            embedded = store.embedding_stats()["computed"] - embedded_before
            epochs = store.engine.epoch - epochs_before
            label = (
                f"/v1/retrieve k=10, {chunks:,} chunks, while ingesting (a 400-word document rewritten "
                f"every {interval:g} s: {writes[0]} rewrites, {epochs} epochs, "
                f"{embedded / took:.0f} chunks/s embedded)"
            )
            lines.append(row(label, http, direct))
    return lines


def make_embedder(kind: str) -> Embedder:
    if kind == "hashing":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from tests.fakes.hashing_embedder import HashingEmbedder

        return HashingEmbedder(dim=384)
    from ragflow.embedders.local import LocalEmbedder

    embedder = LocalEmbedder(batch_size=8)
    embedder.embed(["load the model before timing anything"])
    return embedder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", default="10000,100000", help="index sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="requests per measurement")
    parser.add_argument("--embedder", choices=["local", "hashing"], default="local")
    parser.add_argument(
        "--edit-interval", type=float, default=0.5, help="seconds between rewrites while ingesting"
    )
    parser.add_argument("--quick", action="store_true", help="10k chunks, 50 queries: a smoke run")
    args = parser.parse_args(argv)
    sizes = [10_000] if args.quick else [int(n) for n in args.chunks.split(",")]
    queries = 50 if args.quick else args.queries
    embedder = make_embedder(args.embedder)
    print(
        f"# ragflow REST API benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, embedder {embedder.model_id}, {queries} requests each\n"
    )
    print("| measurement | HTTP p50 | HTTP p99 | baseline | notes |\n|---|---|---|---|---|")
    for size in sizes:
        for line in bench(embedder, size, queries, args.edit_interval):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
