"""What one long query costs the local model, and what it costs a short query sent meanwhile: the query path
(``embed_queries``: cut to the window before tokenizing) against the chunk path that queries took before
(``embed``: every window of the text embedded and averaged), in the same run; printed as Markdown.

    python -m apps.bench.query_cost [--chars 1000000] [--repeats 15] [--no-chunk-path]

Each row gives the median wall time and the median CPU time of this process (the model's threads included):
on a shared machine the wall time is an upper bound, the CPU time what the query itself cost.

Target (issue 19): a query of any length costs at most 2x a short one, and a short query sent during a long
one is not held up beyond its normal latency.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ragflow.embedders.local import LocalEmbedder
from ragflow.embedders.query_batching import QueryBatcher

SENTENCE = "The harbor lantern is lit at dusk by the keeper and guides ships past the copper reef. "
SHORT = "who lights the harbor lantern?"


def median_ms(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """The median wall and CPU milliseconds of ``call``."""
    times, cpu = [], []
    for _ in range(repeats):
        started, used = time.perf_counter(), time.process_time()
        call()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return statistics.median(times) * 1000, statistics.median(cpu) * 1000


def short_while(embed: Callable[[list[str]], object], long_call: Callable[[], object], repeats: int) -> float:
    """Median latency of short queries through ``embed`` while ``long_call`` runs in another thread."""
    done = threading.Event()

    def run_long() -> None:
        long_call()
        done.set()

    worker = threading.Thread(target=run_long)
    worker.start()
    times: list[float] = []
    while not done.is_set() and len(times) < repeats:
        started = time.perf_counter()
        embed([SHORT])
        times.append(time.perf_counter() - started)
    worker.join()
    return statistics.median(times) * 1000 if times else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chars", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--no-chunk-path",
        action="store_true",
        help="skip the rows of the chunk path (the 1 MB one takes minutes)",
    )
    args = parser.parse_args()
    long = (SENTENCE * (args.chars // len(SENTENCE) + 1))[: args.chars]
    embedder = LocalEmbedder()
    embedder.load()
    queries = embedder.replica()  # as the store does: queries on their own copy
    queries.load()
    short = median_ms(lambda: queries.embed_queries([SHORT]), args.repeats)
    window = median_ms(lambda: queries.embed_queries([long[: queries.query_chars]]), args.repeats)
    cut = median_ms(lambda: queries.embed_queries([long]), args.repeats)
    # as a store serves them: every query through its batcher (no cache: the same texts repeat here)
    batcher = QueryBatcher(queries, cache_size=0)
    during_new = short_while(batcher.embed, lambda: [batcher.embed([long]) for _ in range(20)], 50)
    rows: list[tuple[str, float, float | None]] = [
        (f"short ({len(SHORT)} chars), embed_queries", *short),
        (f"{queries.query_chars:,} chars (the cut), embed_queries", *window),
        (f"{args.chars:,} chars, embed_queries (now)", *cut),
        (f"short, while {args.chars:,}-char queries run, both through the store's batcher", during_new, None),
    ]
    if not args.no_chunk_path:
        before = median_ms(lambda: queries.embed([long]), 1)  # the chunk path, which queries took before
        # the lock a short query waited on before
        during_old = short_while(queries.embed_queries, lambda: queries.embed([long]), 50)
        rows[3:3] = [(f"{args.chars:,} chars, embed (before: every window), once", *before)]
        rows.append((f"short, while one {args.chars:,}-char query runs (before)", during_old, None))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {args.chars:,}-character query")
    print(f"plan: {queries.plan}")
    print()
    print("| query | median ms | vs short | median CPU ms | vs short |")
    print("|---|--:|--:|--:|--:|")
    for label, ms, cpu in rows:
        cpu_cells = f"{cpu:.1f} | {cpu / short[1]:.1f}x" if cpu is not None else "- | -"
        print(f"| {label} | {ms:.1f} | {ms / short[0]:.1f}x | {cpu_cells} |")


if __name__ == "__main__":
    main()
