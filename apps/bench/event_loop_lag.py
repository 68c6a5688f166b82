"""Event-loop lag while a store indexes: how late an asyncio ticker scheduled every 10 ms runs while
``async with DocumentStore(...)`` indexes a folder with the real local model and queries are awaited
concurrently with ``aretrieve``.

    python -m apps.bench.event_loop_lag [--documents 50] [--tick-ms 10] [--queries 8]

Prints the worst, p99 and p50 lateness of the ticker, the indexing time, and whether every concurrent
query found its document once the folder was indexed. The loop never runs embedding or search itself;
what lag remains is the interpreter switching threads (the engine's Python code holds the GIL in slices).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ragflow.connectors.folder import FolderSource
from ragflow.store import DocumentStore

ANIMALS = "falcon otter heron badger lynx walrus gecko bison puffin marmot".split()
PLACES = "canyon glacier marsh harbor desert forest reef tundra meadow volcano".split()


@dataclass(frozen=True)
class LagResult:
    """What one run measured."""

    documents: int
    ticks: int
    worst: float
    """Seconds: the latest a tick ran after it was due."""
    p99: float
    p50: float
    indexing_seconds: float
    queries: int
    queries_right: int
    """Queries, awaited concurrently after indexing, whose best hit was the document they describe."""
    queries_during_indexing: int


def write_documents(folder: Path, count: int) -> dict[str, str]:
    """``count`` documents, each about one animal in one place; returns a query per document."""
    queries = {}
    for i in range(count):
        animal, place = ANIMALS[i % len(ANIMALS)], PLACES[(i // len(ANIMALS)) % len(PLACES)]
        name = f"{animal}-{place}-{i}.md"
        facts = " ".join(
            f"Observation {n}: the {animal} was seen near the {place} at dawn, feeding and resting."
            for n in range(12)
        )
        intro = f"This field note is about a {animal} living in a {place}."
        text = f"# The {animal} of the {place}\n\n{intro} {facts}"
        (folder / name).write_text(text)
        queries[name] = f"a {animal} living in a {place}"
    return queries


async def measure(
    folder: Path, queries: dict[str, str], *, tick: float = 0.01, concurrent: int = 8
) -> LagResult:
    """Index ``folder`` (a store on the real local model) while a ticker measures the loop's lateness."""
    store = await asyncio.to_thread(DocumentStore, FolderSource(folder, reconcile_interval=None))
    lateness: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + tick
            await asyncio.sleep(tick)
            lateness.append(max(0.0, loop.time() - due))

    ticking = asyncio.create_task(ticker())
    during = 0
    try:
        started = time.monotonic()
        async with store:
            fresh = asyncio.create_task(store.await_until_fresh(600))
            while not fresh.done():  # queries awaited while the folder indexes
                await asyncio.gather(*(store.aretrieve(q, k=1) for q in list(queries.values())[:concurrent]))
                during += concurrent
            if not fresh.result():
                raise RuntimeError("the folder was not indexed within 600 s")
            indexing = time.monotonic() - started
            names = list(queries)[: max(concurrent, 1) * 2]
            found = await asyncio.gather(*(store.aretrieve(queries[n], k=1) for n in names))
            right = sum(
                1 for n, hits in zip(names, found, strict=True) if hits and hits[0].metadata["doc_id"] == n
            )
    finally:
        stop.set()
        await ticking
    ordered = sorted(lateness)
    return LagResult(
        documents=len(queries),
        ticks=len(ordered),
        worst=ordered[-1],
        p99=ordered[int(0.99 * (len(ordered) - 1))],
        p50=statistics.median(ordered),
        indexing_seconds=indexing,
        queries=len(names),
        queries_right=right,
        queries_during_indexing=during,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=50)
    parser.add_argument("--tick-ms", type=float, default=10.0)
    parser.add_argument("--queries", type=int, default=8, help="queries awaited at once")
    parser.add_argument(
        "--watch-gc", action="store_true", help="also list every garbage collection that took over 50 ms"
    )
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="make gc.freeze() a no-op (the baseline before the embedder froze its model's objects)",
    )
    args = parser.parse_args(argv)
    if args.no_freeze:
        gc.freeze = lambda: None
    slow = SlowCollections() if args.watch_gc else None
    with tempfile.TemporaryDirectory() as tmp:
        queries = write_documents(Path(tmp), args.documents)
        result = asyncio.run(measure(Path(tmp), queries, tick=args.tick_ms / 1000, concurrent=args.queries))
    print(
        f"{result.documents} documents indexed in {result.indexing_seconds:.1f} s; ticker every "
        f"{args.tick_ms:g} ms, {result.ticks} ticks: late by worst {result.worst * 1000:.1f} ms, "
        f"p99 {result.p99 * 1000:.1f} ms, p50 {result.p50 * 1000:.2f} ms; "
        f"{result.queries_during_indexing} queries awaited during indexing; "
        f"{result.queries_right}/{result.queries} concurrent queries found their document"
    )
    if slow is not None:
        print(f"collections over 50 ms (ms, generation): {slow.found or 'none'}")
    return 0


class SlowCollections:
    """Records every garbage collection that holds the interpreter lock for over 50 ms."""

    def __init__(self) -> None:
        self.found: list[tuple[int, int]] = []
        self._started = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif (took := time.perf_counter() - self._started) > 0.05:
            self.found.append((round(took * 1000), info["generation"]))


if __name__ == "__main__":
    raise SystemExit(main())
