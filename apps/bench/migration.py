"""Benchmark of a migration without downtime (issue 23) with the real local model, on the docstrings of the
Python standard library: a chunk-size change that ``ragflow serve`` (its ``MigratingStore``) builds beside
the serving generation and swaps in.

    python -m apps.bench.migration [--docs N] [--rounds N] [--sizes A B C] [--think-ms N] [--idle-seconds N]

Each round, on a fresh state directory (and a fresh embedding cache, so nothing comes from it):

1. **initial build** with chunk size A, quiet: a first ``serve`` start until everything is searchable;
2. **idle**: the serving store under a paced query client (one query, then ``--think-ms``) and one live
   edit a second, for ``--idle-seconds``: query latency and edit -> searchable;
3. **migration under load**: a restart with chunk size B, the same client and edits from the start until
   the swap: query latency, edit -> searchable, and the migration's rate;
4. **quiet migration**: a restart with chunk size C, no client: the migration's rate alone, against the
   quiet initial build of step 1 (the rounds rotate the sizes, so each size takes each role).

Rates are chunks (of the generation built) per second from ``start()`` to searchable (initial build) or
to the swap (migration: reading the folder again, parsing, splitting, embedding and the swap). Prints
Markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from apps.bench.pipeline import percentile, stdlib_corpus, write_corpus
from ragflow.config import RagflowConfig
from ragflow.config.recipe import ConfigRecipe
from ragflow.embedders.local import LocalEmbedder
from ragflow.engine import EpochReport
from ragflow.store.migrating import MigratingStore

EDITED = "edited.txt"


@dataclass
class Probe:
    """Query latencies (ms) and edit -> searchable times (ms) measured while a store serves."""

    queries: list[float] = field(default_factory=list)
    edits: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def serving_store(state: Path, folder: Path, max_tokens: int, embedder: LocalEmbedder) -> MigratingStore:
    """What ``ragflow serve --state-dir state folder`` builds with chunk size ``max_tokens`` (one model
    instance shared by every store of the run, so no round pays a model load)."""
    config = RagflowConfig.from_dict(
        {
            "sources": [{"kind": "folder", "root": str(folder), "reconcile_interval": None}],
            "embedder": {"kind": "local"},
            "splitter": {"max_tokens": max_tokens},
            "persistence": {"state_dir": str(state), "keep_previous_generation": 0},
        }
    )
    return MigratingStore(state, ConfigRecipe(config, config.build_sources, embedder), keep_previous=0)


def initial_build(
    state: Path, folder: Path, size: int, embedder: LocalEmbedder
) -> tuple[float, tuple[int, int], int]:
    """Seconds, (chunks, chunks embedded) and documents of a first start over an empty state directory."""
    store = serving_store(state, folder, size, embedder)
    started = time.perf_counter()
    with store:
        if not store.wait_until_fresh(1800):
            raise RuntimeError("the initial build did not finish within 30 min")
        seconds = time.perf_counter() - started
        return seconds, _chunks(store), store.statistics()["file_count"]


def migrate(
    state: Path,
    folder: Path,
    size: int,
    embedder: LocalEmbedder,
    load: Callable[[MigratingStore], Probe] | None,
) -> tuple[float, tuple[int, int], Probe]:
    """Seconds from ``start()`` to the swap and the new generation's (chunks, chunks embedded): the
    others came from the embedding cache (a paragraph shorter than both chunk sizes is the same chunk in
    both), with ``load`` running against the store meanwhile."""
    store = serving_store(state, folder, size, embedder)
    if store.migration_status()["state"] != "building":
        raise RuntimeError(f"chunk size {size} did not start a migration: {store.migration_status()}")
    started = time.perf_counter()
    with store:
        probes: list[Probe] = []
        runner = None
        if load is not None:
            runner = threading.Thread(target=lambda: probes.append(load(store)), daemon=True)
            runner.start()
        while store.migration_status()["state"] != "swapped":
            status = store.migration_status()
            if status["state"] == "failed":
                raise RuntimeError(f"the migration failed: {status.get('error')}")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        if runner is not None:
            stop_load.set()
            runner.join(60)
            stop_load.clear()
        return seconds, _chunks(store), probes[0] if probes else Probe()


def _chunks(store: MigratingStore) -> tuple[int, int]:
    return store.active.index.count(), store.active.embedding_stats()["computed"]


stop_load = threading.Event()
"""Ends the query client and the edits of ``serve_load`` (set when the measured phase ends)."""


def serve_load(
    store: MigratingStore, folder: Path, words: list[str], think: float, seconds: float | None, seed: int
) -> Probe:
    """A paced query client and one edit a second until ``stop_load`` is set (or ``seconds`` passed). Each
    call takes its own ``seed``: an edit or a query text seen before would come from a cache."""
    probe = Probe()
    deadline = time.monotonic() + seconds if seconds is not None else None
    rng = random.Random(seed)
    indexed = threading.Condition()
    seen: dict[str, float] = {}

    def look(report: EpochReport | None = None) -> None:
        with indexed:
            for status in store.documents():
                if status.doc_id == EDITED and status.indexed_at:
                    seen[EDITED] = status.indexed_at
            indexed.notify_all()

    store.on_update(look)

    def searchable_at(written: float) -> float | None:
        """When the edit written at ``written`` became searchable in the serving generation (the epoch
        reports say when; a swap in between reports nothing, so look every 50 ms too)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with indexed:
                if indexed.wait_for(lambda: seen.get(EDITED, 0) >= written, 0.05):
                    return seen[EDITED]
            look()
        return None

    def edits() -> None:
        number = 0
        while not stop_load.is_set() and (deadline is None or time.monotonic() < deadline):
            number += 1
            text = f"Edit {number}: " + " ".join(rng.sample(words, 40))
            written = time.time()
            (folder / EDITED).write_text(text)
            searchable = searchable_at(written)
            if searchable is not None:
                probe.edits.append((searchable - written) * 1000)
            else:
                found = any(text[:30] in h.text for h in store.retrieve(text, k=3, search_mode="lexical"))
                probe.failures.append(
                    f"edit {number} was not searchable within 30 s (migration "
                    f"{store.migration_status()['state']}, found by a lexical query now: {found})"
                )
            stop_load.wait(max(0.0, 1.0 - (time.time() - written)))

    editor = threading.Thread(target=edits, daemon=True)
    editor.start()
    queries = random.Random(seed + 1)
    while not stop_load.is_set() and (deadline is None or time.monotonic() < deadline):
        query = " ".join(queries.sample(words, 8))
        started = time.perf_counter()
        store.retrieve(query, k=10)
        probe.queries.append((time.perf_counter() - started) * 1000)
        time.sleep(think)
    editor.join(60)
    return probe


def run_round(
    embedder: LocalEmbedder,
    corpus: list[tuple[str, str]],
    sizes: tuple[int, int, int],
    args: argparse.Namespace,
    seed: int,
) -> Round:
    words = " ".join(text for _, text in corpus).split()
    with tempfile.TemporaryDirectory() as tmp:
        folder, state = Path(tmp) / "docs", Path(tmp) / "state"
        folder.mkdir()
        write_corpus(folder, corpus)
        build_s, build_chunks, documents = initial_build(state, folder, sizes[0], embedder)
        store = serving_store(state, folder, sizes[0], embedder)
        with store:
            store.wait_until_fresh(600)
            idle = serve_load(store, folder, words, args.think_ms / 1000, args.idle_seconds, seed)
        loaded_s, loaded_chunks, during = migrate(
            state,
            folder,
            sizes[1],
            embedder,
            lambda s: serve_load(s, folder, words, args.think_ms / 1000, None, seed + 10),
        )
        quiet_s, quiet_chunks, _ = migrate(state, folder, sizes[2], embedder, None)
    return Round(
        sizes,
        documents,
        {
            "build": (build_chunks, build_s),
            "loaded": (loaded_chunks, loaded_s),
            "quiet": (quiet_chunks, quiet_s),
        },
        {"idle": idle, "during": during},
    )


@dataclass
class Round:
    sizes: tuple[int, int, int]
    documents: int
    builds: dict[str, tuple[tuple[int, int], float]]
    """``build``, ``loaded``, ``quiet``: ((chunks of the generation built, of them embedded), seconds)."""
    probes: dict[str, Probe]
    """``idle``, ``during``."""

    def rate(self, key: str, embedded: bool = False) -> float:
        """Chunks (or chunks embedded) per second."""
        (chunks, computed), seconds = self.builds[key]
        return (computed if embedded else chunks) / seconds

    def cell(self, key: str) -> str:
        (chunks, computed), seconds = self.builds[key]
        return (
            f"{chunks} chunks ({computed} embedded) in {seconds:.1f} s = {self.rate(key):.1f} chunks/s, "
            f"{self.rate(key, embedded=True):.1f} embedded/s"
        )


def report(rounds: list[Round]) -> list[str]:
    def pooled(key: str, what: str) -> list[float]:
        return [x for r in rounds for x in getattr(r.probes[key], what)]

    lines = [
        "| round | chunk sizes (build / loaded / quiet) | initial build | migration under load "
        "| quiet migration |",
        "|--:|---|--:|--:|--:|",
    ]
    for n, r in enumerate(rounds, 1):
        cells = [r.cell(k) for k in ("build", "loaded", "quiet")]
        lines.append(f"| {n} | {' / '.join(map(str, r.sizes))} | " + " | ".join(cells) + " |")
    lines.append("")
    for embedded in (False, True):
        build, quiet, loaded = ([r.rate(k, embedded) for r in rounds] for k in ("build", "quiet", "loaded"))
        ratios = [q / b for q, b in zip(quiet, build, strict=True)]
        unit = "chunks embedded/s" if embedded else "chunks/s"
        lines.append(
            f"median {unit}: initial build {statistics.median(build):.1f}, quiet migration "
            f"{statistics.median(quiet):.1f} ({statistics.median(ratios):.0%} of the build, per round), "
            f"migration under the query client and edits {statistics.median(loaded):.1f}"
        )
    lines += [
        "",
        "| while | queries | query p50 | query p99 | edits | edit -> searchable p50 | p95 | max |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key, label in (("idle", "idle (serving, no migration)"), ("during", "during the migration")):
        q, e = pooled(key, "queries"), pooled(key, "edits")
        lines.append(
            f"| {label} | {len(q)} | {percentile(q, 0.5):.1f} ms | {percentile(q, 0.99):.1f} ms | {len(e)} | "
            f"{percentile(e, 0.5):.0f} ms | {percentile(e, 0.95):.0f} ms | {max(e):.0f} ms |"
        )
    failures = pooled("idle", "failures") + pooled("during", "failures")
    if failures:
        lines += ["", f"failures: {failures}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=30, help="standard-library docstrings (default: 30)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, rotating the sizes (default: 3)")
    parser.add_argument("--sizes", type=int, nargs=3, default=[96, 128, 112], help="chunk sizes (tokens)")
    parser.add_argument("--think-ms", type=float, default=20, help="pause between queries (default: 20 ms)")
    parser.add_argument("--idle-seconds", type=float, default=15, help="idle measuring time (default: 15)")
    args = parser.parse_args(argv)
    corpus = stdlib_corpus(args.docs)
    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    rounds: list[Round] = []
    for n in range(args.rounds):
        a, b, c = (args.sizes[(n + i) % 3] for i in range(3))
        sizes = (a, b, c)
        rounds.append(run_round(embedder, corpus, sizes, args, seed=100 * (n + 1)))
        print(f"round {n + 1} done, load average {os.getloadavg()}", flush=True)
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} cores, load average {os.getloadavg()}")
    print("\n".join(report(rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
