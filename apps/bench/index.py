"""Benchmark of the faiss index: apply cost (one document edited: 10 chunks out, 10 in) against faiss's
own ``remove_ids``, and search latency with and without a metadata filter, printed as Markdown.

Run: ``.venv/bin/python -m apps.bench.index [--sizes 10000,100000,1000000]``.

With ``--scale``: the configurations (exact ``flat``, the default ``auto``, ``auto`` with compact ``sq8``
vectors) compared at each size on real embeddings (the PostgreSQL manual, embedded once and replicated with
small perturbations) and synthetic clustered ones: search latency and recall@10 against brute force, with
and without a 1% filter, the apply of one edited document, memory, and a restart (save, then load in a fresh
process and search at once). ``.venv/bin/python -m apps.bench.index --scale --sizes 100000,1000000``.

With ``--graphs``: one HNSW graph per size, built and searched directly with faiss (what larger blocks
would cost): ``.venv/bin/python -m apps.bench.index --graphs --sizes 65536,262144 --ef-construction 40,64``.

With ``--reload``: an index built in the process against the same index saved and loaded, queries
interleaved, so that both are timed under the same load: ``.venv/bin/python -m apps.bench.index --reload
--sizes 1000000 --data clustered --searches 100``.

With ``--restore``: a store's restart, which refills a new index from its saved chunks, without and with
``graph_dir`` (graphs rebuilt, or adopted): ``.venv/bin/python -m apps.bench.index --restore --sizes 262144``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from ragflow.documents import VectorRecord
from ragflow.filters import compile_filter
from ragflow.indexers.faiss import FaissIndex

CHUNKS_PER_DOC = 10
BUILD_BATCH = 100_000
IntArray = npt.NDArray[np.int64]
FloatArrayOpt = npt.NDArray[np.float32] | None


@dataclass
class Result:
    size: int
    build_s: float
    apply_ms: tuple[float, float, float]
    apply_cpu_ms: tuple[float, float]
    baseline_apply_ms: tuple[float, float, float]
    search_ms: tuple[float, float]
    baseline_search_ms: tuple[float, float]
    filtered_ms: tuple[float, float]
    filtered_cold_ms: float
    index_mb: float
    rss_mb: float


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def metadata(doc: int) -> dict[str, object]:
    # One document in ten is English: the "~10% of documents" filter.
    return {"path": f"docs/{doc // 1000}/{doc}.txt", "lang": "en" if doc % 10 == 0 else "de", "doc": doc}


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmRSS``), or another field of /proc/self/status (``VmHWM``: its
    peak; ``RssFile``: the part that is pages of mapped files), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_ms(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1e3


def timed_cpu_ms(action: Callable[[], object], cpu: list[float]) -> float:
    """Wall milliseconds of ``action``; its thread's CPU milliseconds are appended to ``cpu`` (what a busy
    machine's preemptions do not inflate)."""
    start = time.thread_time()
    wall = timed_ms(action)
    cpu.append((time.thread_time() - start) * 1e3)
    return wall


def percentiles(samples: list[float], *qs: float) -> tuple[float, ...]:
    return tuple(float(np.percentile(samples, q)) for q in qs)


POSTGRES_DOCS = Path("/usr/share/doc/postgresql-doc-15/html")
"""Debian's postgresql-doc-15: real prose that nobody here wrote, embedded as the real corpus."""


def real_vectors(count: int, cache: Path) -> npt.NDArray[np.float32]:
    """``count`` all-MiniLM-L6-v2 embeddings of ~100-word chunks of the PostgreSQL manual, cached in
    ``cache`` (embedding them takes minutes on 2 cores)."""
    if cache.exists():
        vectors = np.load(cache)
        if len(vectors) >= count:
            return np.ascontiguousarray(vectors[:count])
    texts: list[str] = []
    for page in sorted(POSTGRES_DOCS.glob("*.html")):
        words = re.sub(r"<[^>]+>|&[a-z]+;", " ", page.read_text(errors="ignore")).split()
        texts += [" ".join(words[i : i + 100]) for i in range(0, len(words) - 50, 100)]
        if len(texts) >= count:
            break
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} chunks in {POSTGRES_DOCS}: apt-get install postgresql-doc-15")
    from ragflow.embedders.local import LocalEmbedder

    model = LocalEmbedder()
    vectors = np.concatenate([model.embed(texts[i : i + 8]) for i in range(0, count, 8)])
    np.save(cache, vectors)
    return vectors


def scale_vectors(
    kind: str, n: int, dim: int, rng: np.random.Generator, base: npt.NDArray[np.float32] | None
) -> npt.NDArray[np.float32]:
    """``n`` unit vectors: ``real`` = the real embeddings replicated with small perturbations (each copy a
    real chunk plus 0.3 x another one plus noise of norm ~0.2, so that copies are not near-duplicates of one
    another), ``clustered`` = 1,000 random centres with noise, ``random`` = i.i.d. Gaussian."""
    if kind == "random":
        return unit_vectors(rng, n, dim)
    if kind == "real":
        assert base is not None
        x = base[rng.integers(0, len(base), n)] + 0.3 * base[rng.integers(0, len(base), n)]
        x += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(0.2 / np.sqrt(dim))
    else:
        centres = np.random.default_rng(12345).standard_normal((1000, dim), dtype=np.float32)
        x = centres[rng.integers(0, 1000, n)] + 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def run(size: int, dim: int, applies: int, searches: int, seed: int) -> Result:
    rng = np.random.default_rng(seed)
    rss_before = rss_mb()
    index = FaissIndex(dim, kind="flat")  # the exact index against faiss's exact IndexIDMap2
    baseline = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    n_docs = size // CHUNKS_PER_DOC
    metas = [metadata(doc) for doc in range(n_docs)]
    build_s = 0.0
    for start in range(0, size, BUILD_BATCH):
        stop = min(size, start + BUILD_BATCH)
        vectors = unit_vectors(rng, stop - start, dim)
        batch = [
            VectorRecord(i, vectors[i - start], f"chunk {i}", metas[i // CHUNKS_PER_DOC])
            for i in range(start, stop)
        ]
        began = time.perf_counter()
        index.apply(batch, [])
        build_s += time.perf_counter() - began
        baseline.add_with_ids(vectors, np.arange(start, stop, dtype=np.int64))
    rss_after = rss_mb()

    # Edit one document per apply: its 10 chunks go, 10 new ones (new ids) come.
    chunks = {doc: list(range(doc * CHUNKS_PER_DOC, (doc + 1) * CHUNKS_PER_DOC)) for doc in range(n_docs)}
    next_id = size
    ours: list[float] = []
    ours_cpu: list[float] = []
    naive: list[float] = []
    for _ in range(applies):
        doc = int(rng.integers(n_docs))
        old, new = chunks[doc], list(range(next_id, next_id + CHUNKS_PER_DOC))
        next_id += CHUNKS_PER_DOC
        chunks[doc] = new
        vectors = unit_vectors(rng, CHUNKS_PER_DOC, dim)
        upserts = [VectorRecord(i, v, f"chunk {i}", metas[doc]) for i, v in zip(new, vectors, strict=True)]
        cpu_start = time.thread_time()
        ours.append(timed_ms(lambda: index.apply(upserts, old)))  # noqa: B023 - called at once
        ours_cpu.append((time.thread_time() - cpu_start) * 1e3)

        def naive_apply() -> None:
            # What an IndexIDMap2 user must do: remove (O(n) per call) then add.
            # faiss's Python wrapper takes an id array here, which its stubs do not know.
            baseline.remove_ids(np.asarray(old, dtype=np.int64))  # type: ignore[arg-type]  # noqa: B023
            baseline.add_with_ids(vectors, np.asarray(new, dtype=np.int64))  # noqa: B023

        naive.append(timed_ms(naive_apply))

    queries = unit_vectors(rng, searches, dim)
    predicate = compile_filter("lang == 'en'", None)
    index.search(queries[0], 10, predicate)  # the first use evaluates the filter once per document
    plain = [timed_ms(lambda: index.search(q, 10)) for q in queries]  # noqa: B023
    reference = [timed_ms(lambda: baseline.search(q[None, :], 10)) for q in queries]  # noqa: B023
    filtered = [timed_ms(lambda: index.search(q, 10, predicate)) for q in queries]  # noqa: B023
    # A filter never seen before: every document's metadata is evaluated during the search.
    fresh_filters = [compile_filter(f"lang == 'en' && doc >= `-{j}`", None) for j in range(1, 6)]
    cold = [timed_ms(lambda: index.search(queries[0], 10, f)) for f in fresh_filters]  # noqa: B023
    return Result(
        size=size,
        build_s=build_s,
        apply_ms=percentiles(ours, 50, 95, 100),  # type: ignore[arg-type]
        apply_cpu_ms=percentiles(ours_cpu, 50, 95),  # type: ignore[arg-type]
        baseline_apply_ms=percentiles(naive, 50, 95, 100),  # type: ignore[arg-type]
        search_ms=percentiles(plain, 50, 95),  # type: ignore[arg-type]
        baseline_search_ms=percentiles(reference, 50, 95),  # type: ignore[arg-type]
        filtered_ms=percentiles(filtered, 50, 95),  # type: ignore[arg-type]
        filtered_cold_ms=float(np.median(cold)),
        index_mb=index.stats().memory_bytes / 2**20,
        rss_mb=rss_after - rss_before,
    )


SCALE_CONFIGS: dict[str, dict[str, object]] = {
    "flat": {"kind": "flat"},
    "auto": {},
    "auto+sq8": {"vectors": "sq8"},
    "hnsw": {"kind": "hnsw"},
}
BUILD_THREADS = 1
"""Blocks whose graphs are built at once (``--build-threads``): only the time until graphs are ready
depends on it."""
"""Configurations the scale benchmark compares: exact, the defaults, the defaults with compact vectors."""
SCALE_FILTER = "bucket == `0`"
"""Matches 1% of documents."""


@dataclass
class ScaleResult:
    size: int
    data: str
    config: str
    build_s: float
    graphs_s: float
    search_ms: tuple[float, float]
    search_cpu_ms: float
    recall: float
    filtered_ms: tuple[float, float]
    filtered_cpu_ms: float
    filtered_recall: float
    apply_ms: float
    memory_mb: float
    rss_mb: float
    save_s: float
    file_mb: float
    restart: dict[str, float]


class ScaleData:
    """The benchmark's ``size`` vectors (ids = rows), generated a chunk at a time and the same every time
    (a seed per chunk): 5M float32 vectors are 7.5 GB, which this process never holds at once."""

    CHUNK = BUILD_BATCH

    def __init__(self, kind: str, size: int, seed: int, base: FloatArrayOpt) -> None:
        self.kind, self.size, self.seed, self.base = kind, size, seed, base

    def chunk(self, start: int) -> npt.NDArray[np.float32]:
        """Rows ``start`` (a multiple of ``CHUNK``) to ``start + CHUNK``."""
        rng = np.random.default_rng([self.seed, start // self.CHUNK])
        return scale_vectors(self.kind, min(self.CHUNK, self.size - start), 384, rng, self.base)

    def chunks(self) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
        for start in range(0, self.size, self.CHUNK):
            yield start, self.chunk(start)

    def rows(self, ids: IntArray) -> npt.NDArray[np.float32]:
        """The vectors of ``ids``, each chunk they are in generated once."""
        out = np.empty((len(ids), 384), dtype=np.float32)
        for first in np.unique(ids // self.CHUNK).tolist():
            mine = np.flatnonzero(ids // self.CHUNK == first)
            out[mine] = self.chunk(first * self.CHUNK)[ids[mine] - first * self.CHUNK]
        return out


def exact_top10(
    data: ScaleData, queries: npt.NDArray[np.float32], filters: list[Callable[[IntArray], Any] | None]
) -> list[IntArray]:
    """Ids (= rows) of the exact top-10 of each query among the rows each of ``filters`` keeps (None: all
    rows), by brute force, in one pass over the data."""
    best = [np.full((len(queries), 10), -np.inf, dtype=np.float32) for _ in filters]
    ids = [np.zeros((len(queries), 10), dtype=np.int64) for _ in filters]
    for start, rows in data.chunks():
        every = np.arange(start, start + len(rows))
        for f, keep in enumerate(filters):
            part, vectors = every, rows
            if keep is not None:
                chosen = keep(every)
                part, vectors = every[chosen], rows[chosen]
            if len(part) < 10:
                continue
            scores = queries @ vectors.T
            top = np.argpartition(-scores, 9, axis=1)[:, :10]
            both = np.concatenate([best[f], np.take_along_axis(scores, top, axis=1)], axis=1)
            both_ids = np.concatenate([ids[f], part[top]], axis=1)
            order = np.argsort(-both, axis=1)[:, :10]
            best[f] = np.take_along_axis(both, order, axis=1)
            ids[f] = np.take_along_axis(both_ids, order, axis=1)
    return ids


def scale_case(
    args: argparse.Namespace, kind: str, size: int, base: FloatArrayOpt
) -> tuple[ScaleData, npt.NDArray[np.float32], IntArray]:
    """The ``size`` vectors of ``kind``, ``args.searches`` queries and their exact top-10: what the
    graphs, reload and restore benchmarks measure at each size."""
    data = ScaleData(kind, size, args.seed, base)
    queries = scale_vectors(kind, args.searches, 384, np.random.default_rng(args.seed + 1), base)
    (truth,) = exact_top10(data, queries, [None])
    return data, queries, truth


def recall(found: list[list[int]], truth: IntArray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]))


def scale_metadata(doc: int) -> dict[str, object]:
    return {"path": f"docs/{doc // 1000}/{doc}.txt", "doc": doc, "bucket": doc % 100}


def run_scale(
    size: int, data_kind: str, config: str, searches: int, seed: int, workdir: Path, base: FloatArrayOpt
) -> ScaleResult:
    data = ScaleData(data_kind, size, seed, base)
    queries = scale_vectors(data_kind, searches, 384, np.random.default_rng(seed + 1), base)
    # The 1% filter: documents (10 chunks each) whose number is a multiple of 100.
    truth, truth_filtered = exact_top10(data, queries, [None, lambda rows: rows // CHUNKS_PER_DOC % 100 == 0])
    np.save(workdir / "queries.npy", queries)
    np.save(workdir / "truth.npy", truth)
    path = workdir / f"index-{config}-{size}.bin"
    measured = measure_index(data, queries, config, path, np.random.default_rng(seed))
    found, found_filtered = measured.pop("found"), measured.pop("found_filtered")
    restart = restart_probe(path, config, workdir)
    result = ScaleResult(
        size=size,
        data=data_kind,
        config=config,
        build_s=measured["build_s"],
        graphs_s=measured["graphs_s"],
        search_ms=measured["search_ms"],
        search_cpu_ms=measured["search_cpu_ms"],
        recall=recall(found, truth),
        filtered_ms=measured["filtered_ms"],
        filtered_cpu_ms=measured["filtered_cpu_ms"],
        filtered_recall=recall(found_filtered, truth_filtered),
        apply_ms=measured["apply_ms"],
        memory_mb=measured["memory_mb"],
        rss_mb=measured["rss_mb"],
        save_s=measured["save_s"],
        file_mb=path.stat().st_size / 2**20,
        restart=restart,
    )
    path.unlink()
    return result


def measure_index(
    data: ScaleData, queries: npt.NDArray[np.float32], config: str, path: Path, rng: np.random.Generator
) -> dict[str, Any]:
    """Build an index of ``config`` over ``data`` (ids = rows), time its searches and edits, save it to
    ``path``; the index is released on return."""
    size = data.size
    metas = [scale_metadata(doc) for doc in range(size // CHUNKS_PER_DOC + 1)]
    rss_before = rss_mb()
    options = {"build_threads": BUILD_THREADS, **SCALE_CONFIGS[config]}
    index = FaissIndex(384, **options)
    began = time.perf_counter()
    for start, rows in data.chunks():
        batch = [
            VectorRecord(start + j, rows[j], f"chunk {start + j}", metas[(start + j) // CHUNKS_PER_DOC])
            for j in range(len(rows))
        ]
        index.apply(batch, [])
    build_s = time.perf_counter() - began
    index.wait_for_graphs()
    graphs_s = time.perf_counter() - began - build_s
    predicate = compile_filter(SCALE_FILTER, None)
    index.search(queries[0], 10, predicate)  # evaluates the filter once per document
    found: list[list[int]] = []
    found_filtered: list[list[int]] = []

    def search(query: npt.NDArray[np.float32], into: list[list[int]], filtered: bool) -> None:
        into.append([h.id for h in index.search(query, 10, predicate if filtered else None)])

    cpu: list[float] = []
    filtered_cpu: list[float] = []
    plain = [timed_cpu_ms(lambda: search(q, found, False), cpu) for q in queries]  # noqa: B023
    filtered = [timed_cpu_ms(lambda: search(q, found_filtered, True), filtered_cpu) for q in queries]  # noqa: B023
    rss = rss_mb() - rss_before
    edited = rng.integers(size // CHUNKS_PER_DOC, size=30)
    old_ids = (edited[:, None] * CHUNKS_PER_DOC + np.arange(CHUNKS_PER_DOC)).reshape(-1)
    old_vectors = data.rows(old_ids).reshape(30, CHUNKS_PER_DOC, -1)
    edits = []
    for j, doc in enumerate(edited.tolist()):
        old = range(doc * CHUNKS_PER_DOC, (doc + 1) * CHUNKS_PER_DOC)
        new = range(size + CHUNKS_PER_DOC * j, size + CHUNKS_PER_DOC * (j + 1))
        vectors = old_vectors[j]
        upserts = [VectorRecord(i, v, f"chunk {i}", metas[doc]) for i, v in zip(new, vectors, strict=True)]
        edits.append(timed_ms(lambda: index.apply(upserts, old)))  # noqa: B023
        index.apply(
            [VectorRecord(o, v, f"chunk {o}", metas[doc]) for o, v in zip(old, vectors, strict=True)], new
        )
    save_s = timed_ms(lambda: index.save(str(path))) / 1e3
    memory_mb = index.stats().memory_bytes / 2**20
    index.close()
    return {
        "found": found,
        "found_filtered": found_filtered,
        "build_s": build_s,
        "graphs_s": graphs_s,
        "search_ms": percentiles(plain, 50, 99),
        "filtered_ms": percentiles(filtered, 50, 99),
        "search_cpu_ms": float(np.median(cpu)),
        "filtered_cpu_ms": float(np.median(filtered_cpu)),
        "apply_ms": float(np.median(edits)),
        "memory_mb": memory_mb,
        "rss_mb": rss,
        "save_s": save_s,
    }


def restart_probe(path: Path, config: str, workdir: Path) -> dict[str, float]:
    """Load a saved index in a fresh process (so that its RSS is the loaded index's) and time it."""
    command = [sys.executable, "-m", "apps.bench.index", "--probe", str(path), "--probe-config", config]
    command += ["--probe-dir", str(workdir)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    parsed: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return parsed


class GcPauses:
    """The garbage collector's pauses (milliseconds) while recording, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0
        self.recording = False
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.recording:
            self.pauses.append((time.perf_counter() - self._started) * 1e3)

    def take(self) -> list[float]:
        pauses, self.pauses = self.pauses, []
        return pauses


def probe(path: str, config: str, workdir: Path) -> None:
    """The restarted process: load, then search at once, as a restarted server would; then the same
    queries again (what a warm process answers), with the garbage collector's pauses of each pass."""
    rss_start = rss_mb()
    gc_pauses = GcPauses()
    began = time.perf_counter()
    index = FaissIndex(384, **SCALE_CONFIGS[config])
    index.load(path)
    load_s = time.perf_counter() - began
    stats = index.stats()
    queries, truth = np.load(workdir / "queries.npy"), np.load(workdir / "truth.npy")
    found: list[list[int]] = []
    cpu: list[float] = []
    preempted = faults = 0
    gc_pauses.recording = True
    times = []
    for query in queries:
        before = resource.getrusage(resource.RUSAGE_THREAD)
        times.append(timed_cpu_ms(lambda: found.append([h.id for h in index.search(query, 10)]), cpu))  # noqa: B023
        after = resource.getrusage(resource.RUSAGE_THREAD)
        preempted += after.ru_nivcsw > before.ru_nivcsw  # another process took the core mid-query
        faults += after.ru_majflt - before.ru_majflt  # pages read from disk
    first_pauses = gc_pauses.take()
    again = [timed_ms(lambda: index.search(q, 10)) for q in queries]  # noqa: B023
    again_pauses = gc_pauses.take()
    gc_pauses.recording = False
    rss_after = rss_mb()
    # Then 1,000 more queries (the ones above, moved a little), filtered and not: does RSS keep growing?
    predicate = compile_filter(SCALE_FILTER, None)
    rng = np.random.default_rng(7)
    for j in range(1000):
        query = queries[j % len(queries)] + rng.standard_normal(queries.shape[1]).astype(np.float32) * 0.02
        index.search(query, 10, predicate if j % 2 else None)
    report = {
        "load_s": load_s,
        "graphs_pending": stats.graphs_pending,
        "first_ms": times[0],
        "p50_ms": float(np.median(times)),
        "p99_ms": float(np.percentile(times, 99)),
        "cpu_ms": float(np.median(cpu)),
        "cpu_p99_ms": float(np.percentile(cpu, 99)),
        "preempted": preempted,
        "major_faults": faults,
        "recall": recall(found, truth),
        "gc_ms": sum(first_pauses),
        "gc_max_ms": max(first_pauses, default=0.0),
        "again_p50_ms": float(np.median(again)),
        "again_p99_ms": float(np.percentile(again, 99)),
        "again_gc_ms": sum(again_pauses),
        "load_average": os.getloadavg()[0],
        "rss_mb": rss_after,
        "rss_growth_mb": rss_after - rss_start,
        "rss_after_1000_mb": rss_mb(),
        "rss_file_mb": rss_mb("RssFile"),
        "rss_peak_mb": rss_mb("VmHWM"),
    }
    index.close()
    print(json.dumps(report))


def main_graphs(args: argparse.Namespace, sizes: list[int]) -> None:
    """One HNSW graph over each size's vectors, built directly with faiss (OpenMP threads as faiss sets
    them), then searched one query at a time in one thread at several breadths: what a larger block's
    graph would cost to build and search, and what recall it keeps."""
    base_path = Path(tempfile.gettempdir()) / f"ragflow-bench-real-{args.real_chunks}.npy"
    base = real_vectors(args.real_chunks, base_path) if "real" in args.data.split(",") else None
    ef_searches = [int(e) for e in args.ef_search.split(",")]
    lines = [
        f"faiss {faiss.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; dim 384, "
        f"M {args.hnsw_m}; {args.searches} single queries, top-10, recall@10 against brute force; "
        "search CPU p50 (one thread) at each efSearch.",
        "",
        "| vectors | data | efConstruction | build s | " + " | ".join(f"ef {e}" for e in ef_searches) + " |",
        "|---:|---|---:|---:|" + "---:|" * len(ef_searches),
    ]
    for size in sizes:
        for kind in args.data.split(","):
            data, queries, truth = scale_case(args, kind, size, base)
            for ef_construction in (int(e) for e in args.ef_construction.split(",")):
                graph: Any = faiss.IndexHNSWFlat(384, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                graph.hnsw.efConstruction = ef_construction
                began = time.perf_counter()
                for _, rows in data.chunks():
                    graph.add(rows)
                build_s = time.perf_counter() - began
                cells = []
                threads = faiss.omp_get_max_threads()
                faiss.omp_set_num_threads(1)
                for ef in ef_searches:
                    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                    params.efSearch = ef
                    found: list[list[int]] = []
                    cpu: list[float] = []
                    for q in queries:
                        start = time.thread_time()
                        found.append(graph.search(q[None], 10, params=params)[1][0].tolist())
                        cpu.append((time.thread_time() - start) * 1e3)
                    cells.append(f"{float(np.median(cpu)):.3f} ms, {recall(found, truth):.3f}")
                faiss.omp_set_num_threads(threads)
                line = (
                    f"| {size:,} | {kind} | {ef_construction} | {build_s:.0f} | " + " | ".join(cells) + " |"
                )
                print(line, flush=True)
                lines.append(line)
                graph = None  # released before the next one is built
    print("\n".join(lines))


def main_reload(args: argparse.Namespace, sizes: list[int]) -> None:
    """An index built in this process against the same index saved and loaded, their queries interleaved
    in one thread (same moment, same load): whether a restarted index searches slower than a built one."""
    base_path = Path(tempfile.gettempdir()) / f"ragflow-bench-real-{args.real_chunks}.npy"
    base = real_vectors(args.real_chunks, base_path) if "real" in args.data.split(",") else None
    lines = [
        f"faiss {faiss.__version__}, {os.cpu_count()} cores; dim 384, faiss_kind auto, {args.searches} "
        "queries, each asked of the built index and of the loaded one in turn (which first alternates), "
        "3 rounds; wall p50 / p99, CPU p50 / p99 in ms, queries preempted (involuntary context switches).",
        "",
        "| vectors | data | round | load average | built: p50 | p99 | CPU p50 | CPU p99 | preempted "
        "| loaded: p50 | p99 | CPU p50 | CPU p99 | preempted | recall@10 built / loaded |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="ragflow-bench-reload-") as tmp:
        for size in sizes:
            for kind in args.data.split(","):
                data, queries, truth = scale_case(args, kind, size, base)
                built = FaissIndex(384, build_threads=args.build_threads)
                for start, rows in data.chunks():
                    ids = range(start, start + len(rows))
                    metas = [scale_metadata(i // CHUNKS_PER_DOC) for i in ids]
                    records = zip(ids, rows, metas, strict=True)
                    built.apply([VectorRecord(i, v, f"chunk {i}", m) for i, v, m in records], [])
                built.wait_for_graphs()
                path = Path(tmp) / "index.bin"
                built.save(str(path))
                loaded = FaissIndex(384)
                loaded.load(str(path))
                for round_ in range(3):
                    cells = interleaved(built, loaded, queries, truth)
                    lines.append(f"| {size:,} | {kind} | {round_ + 1} | {os.getloadavg()[0]:.1f} | {cells} |")
                    print(lines[-1], flush=True)
                built.close()
                loaded.close()
                del built, loaded
                path.unlink()
    print("\n".join(lines))


def interleaved(
    first: FaissIndex, second: FaissIndex, queries: npt.NDArray[np.float32], truth: IntArray
) -> str:
    """Each query asked of both indexes in turn; their timings as table cells."""
    samples: list[list[tuple[float, float, bool]]] = [[], []]
    found: list[list[list[int]]] = [[], []]
    for i, query in enumerate(queries):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            index = (first, second)[which]
            before = resource.getrusage(resource.RUSAGE_THREAD)
            cpu: list[float] = []
            wall = timed_cpu_ms(lambda: found[which].append([h.id for h in index.search(query, 10)]), cpu)  # noqa: B023
            preempted = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw > before.ru_nivcsw
            samples[which].append((wall, cpu[0], preempted))
    cells = []
    for timings in samples:
        walls, cpus = [t[0] for t in timings], [t[1] for t in timings]
        cells.append(
            f"{np.median(walls):.2f} | {np.percentile(walls, 99):.2f} | {np.median(cpus):.2f} "
            f"| {np.percentile(cpus, 99):.2f} | {sum(t[2] for t in timings)}"
        )
    return " | ".join(cells) + f" | {recall(found[0], truth):.3f} / {recall(found[1], truth):.3f}"


RESTORE_BATCH = 10_000
"""Chunks per apply in the restore probe (a store's restore applies its saved chunks in batches)."""


def main_restore(args: argparse.Namespace, sizes: list[int]) -> None:
    """A store's restart without and with ``graph_dir``: the store refills a new index from its saved
    chunks; without kept graphs every block's graph is rebuilt, with them each full block's is adopted."""
    global BUILD_THREADS
    BUILD_THREADS = args.build_threads
    base_path = Path(tempfile.gettempdir()) / f"ragflow-bench-real-{args.real_chunks}.npy"
    base = real_vectors(args.real_chunks, base_path) if "real" in args.data.split(",") else None
    lines = [
        f"faiss {faiss.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; dim 384, "
        f"faiss_kind auto, build threads {BUILD_THREADS}; the restore applies the chunks in batches of "
        f"{RESTORE_BATCH:,} in a fresh process, then waits for graphs; {args.searches} queries after each.",
        "",
        "| vectors | data | graph_dir | graphs built s | graph files MiB | restore s | then graphs ready s "
        "| query p50 right after restore (CPU) | recall@10 | p50 once ready (CPU) | recall@10 | RSS MiB |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="ragflow-bench-restore-") as tmp:
        workdir = Path(tmp)
        for size in sizes:
            for kind in args.data.split(","):
                data, queries, truth = scale_case(args, kind, size, base)
                np.save(workdir / "queries.npy", queries)
                np.save(workdir / "truth.npy", truth)
                for keep in (False, True):
                    print(f"... {size:,} {kind} vectors, graph_dir {'on' if keep else 'off'}", flush=True)
                    lines.append(restore_row(args, data, workdir, keep))
                    print(lines[-1], flush=True)
    print("\n".join(lines))


def restore_row(args: argparse.Namespace, data: ScaleData, workdir: Path, keep: bool) -> str:
    """Index ``data`` (graphs kept in a folder if ``keep``), then time a restore in a fresh process."""
    graphs = workdir / "graphs"
    index = FaissIndex(384, build_threads=BUILD_THREADS, graph_dir=graphs if keep else None)
    began = time.perf_counter()
    for start, rows in data.chunks():
        index.apply(
            [VectorRecord(start + j, row, f"chunk {start + j}", {}) for j, row in enumerate(rows)], []
        )
    index.wait_for_graphs()
    built_s = time.perf_counter() - began
    index.close()
    del index
    on_disk = sum(f.stat().st_size for f in graphs.iterdir()) / 2**20 if keep else 0.0
    command = [
        sys.executable,
        "-m",
        "apps.bench.index",
        "--restore-probe",
        str(data.size),
        "--data",
        data.kind,
    ]
    command += ["--seed", str(data.seed), "--probe-dir", str(workdir), "--real-chunks", str(args.real_chunks)]
    command += ["--build-threads", str(BUILD_THREADS)] + (["--probe-graphs", str(graphs)] if keep else [])
    r = json.loads(
        subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    )
    if keep:
        for file in graphs.iterdir():
            file.unlink()
    return (
        f"| {data.size:,} | {data.kind} | {'on' if keep else 'off'} | {built_s:.0f} | {on_disk:,.0f} "
        f"| {r['restore_s']:.1f} | {r['ready_s']:.1f} | {r['early_ms']:.2f} ({r['early_cpu_ms']:.2f}) "
        f"| {r['early_recall']:.3f} | {r['p50_ms']:.2f} ({r['cpu_ms']:.2f}) | {r['recall']:.3f} "
        f"| {r['rss_mb']:.0f} |"
    )


def restore_probe(args: argparse.Namespace) -> None:
    """The restarted store's index: refilled batch by batch, then queried before and after its graphs."""
    size = int(args.restore_probe)
    base_path = Path(tempfile.gettempdir()) / f"ragflow-bench-real-{args.real_chunks}.npy"
    base = np.load(base_path) if args.data == "real" else None
    data = ScaleData(args.data, size, args.seed, base)
    workdir = Path(args.probe_dir)
    queries, truth = np.load(workdir / "queries.npy"), np.load(workdir / "truth.npy")
    began = time.perf_counter()
    index = FaissIndex(384, build_threads=args.build_threads, graph_dir=args.probe_graphs)
    for start, rows in data.chunks():
        for first in range(0, len(rows), RESTORE_BATCH):
            part = rows[first : first + RESTORE_BATCH]
            ids = range(start + first, start + first + len(part))
            index.apply([VectorRecord(i, v, f"chunk {i}", {}) for i, v in zip(ids, part, strict=True)], [])
    restore_s = time.perf_counter() - began

    def measure() -> tuple[float, float, float]:
        found: list[list[int]] = []
        cpu: list[float] = []
        wall = [timed_cpu_ms(lambda: found.append([h.id for h in index.search(q, 10)]), cpu) for q in queries]  # noqa: B023
        return float(np.median(wall)), float(np.median(cpu)), recall(found, truth)

    early = measure()
    index.wait_for_graphs()
    ready_s = time.perf_counter() - began - restore_s
    late = measure()
    index.close()
    print(
        json.dumps(
            {
                "restore_s": restore_s,
                "ready_s": ready_s,
                "early_ms": early[0],
                "early_cpu_ms": early[1],
                "early_recall": early[2],
                "p50_ms": late[0],
                "cpu_ms": late[1],
                "recall": late[2],
                "rss_mb": rss_mb(),
            }
        )
    )


def scale_markdown(results: list[ScaleResult], searches: int) -> str:
    lines = [
        f"faiss {faiss.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; dim 384, "
        f"{searches} single queries per row, top-10; recall@10 against brute force in the same run; "
        f"filter `{SCALE_FILTER}` matches 1% of documents.",
        "",
        "| vectors | data | config | search p50 | p99 | CPU p50 | recall@10 | 1% filter p50 | p99 | CPU p50 "
        "| recall@10 | edit apply p50 | applies s | graphs after s | index MiB | RSS growth MiB | save s "
        "| file MiB | restart: load s | first query ms | p50 | p99 | CPU p50 | recall@10 | RSS MiB "
        "| after 1,000 more | of it file pages | peak | CPU p99 | queries preempted | major faults "
        "| GC pauses in those queries ms (max) | same queries again p50 | p99 | load average |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p = r.restart
        lines.append(
            f"| {r.size:,} | {r.data} | {r.config} | {r.search_ms[0]:.2f} | {r.search_ms[1]:.2f} "
            f"| {r.search_cpu_ms:.2f} | {r.recall:.3f} | {r.filtered_ms[0]:.2f} | {r.filtered_ms[1]:.2f} "
            f"| {r.filtered_cpu_ms:.2f} | {r.filtered_recall:.3f} "
            f"| {r.apply_ms:.2f} | {r.build_s:.0f} | {r.graphs_s:.0f} | {r.memory_mb:.0f} | {r.rss_mb:.0f} "
            f"| {r.save_s:.1f} | {r.file_mb:.0f} | {p['load_s']:.1f} | {p['first_ms']:.1f} "
            f"| {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['cpu_ms']:.2f} | {p['recall']:.3f} "
            f"| {p['rss_mb']:.0f} | {p['rss_after_1000_mb']:.0f} | {p['rss_file_mb']:.0f} "
            f"| {p['rss_peak_mb']:.0f} | {p['cpu_p99_ms']:.2f} | {p['preempted']:.0f} "
            f"| {p['major_faults']:.0f} "
            f"| {p['gc_ms']:.1f} ({p['gc_max_ms']:.1f}) | {p['again_p50_ms']:.2f} "
            f"| {p['again_p99_ms']:.2f} | {p['load_average']:.1f} |"
        )
    return "\n".join(lines)


def markdown(results: list[Result], dim: int, applies: int, searches: int) -> str:
    lines = [
        f"faiss {faiss.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
        f"Python {platform.python_version()}; dim {dim}, {CHUNKS_PER_DOC} chunks per document, "
        f"{applies} applies, {searches} queries per size.",
        "",
        "**apply()** of one edited document (delete 10 chunks, upsert 10), ms:",
        "",
        "| vectors | FaissIndex p50 | p95 | max | CPU p50 | CPU p95 "
        "| IndexIDMap2 remove_ids+add p50 | p95 | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.size:,} | {r.apply_ms[0]:.2f} | {r.apply_ms[1]:.2f} | {r.apply_ms[2]:.2f} "
            f"| {r.apply_cpu_ms[0]:.2f} | {r.apply_cpu_ms[1]:.2f} "
            f"| {r.baseline_apply_ms[0]:.2f} | {r.baseline_apply_ms[1]:.2f} | {r.baseline_apply_ms[2]:.2f} |"
        )
    lines += [
        "",
        "**search()** top-10, one query, ms (filter `lang == 'en'` matches 10% of documents; warm = its "
        "answers per document cached, cold = a filter never seen before):",
        "",
        "| vectors | no filter p50 | p95 | raw faiss IndexFlatIP p50 | 10% filter warm p50 | p95 "
        "| 10% filter cold p50 | build s | index MiB | RSS growth MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.size:,} | {r.search_ms[0]:.1f} | {r.search_ms[1]:.1f} | {r.baseline_search_ms[0]:.1f} "
            f"| {r.filtered_ms[0]:.1f} | {r.filtered_ms[1]:.1f} | {r.filtered_cold_ms:.1f} | {r.build_s:.1f} "
            f"| {r.index_mb:.0f} | {r.rss_mb:.0f} |"
        )
    lines += [
        "",
        "CPU = the applying thread's CPU time, which a busy machine's preemptions do not inflate. "
        "RSS growth covers both indexes (ours and the IndexIDMap2 baseline) plus texts and metadata.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated index sizes")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--applies", type=int, default=50)
    parser.add_argument("--searches", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", action="store_true", help="compare index configurations at scale instead")
    parser.add_argument("--configs", default=",".join(SCALE_CONFIGS), help="with --scale: configurations")
    parser.add_argument("--data", default="real,clustered", help="with --scale: real, clustered, random")
    parser.add_argument(
        "--real-chunks", type=int, default=4000, help="real chunks embedded (then replicated)"
    )
    parser.add_argument("--build-threads", type=int, default=1, help="with --scale: graph builds at once")
    parser.add_argument(
        "--restore",
        action="store_true",
        help="instead: a store's restart (refill a new index) without and with graph_dir, at --sizes",
    )
    parser.add_argument(
        "--graphs",
        action="store_true",
        help="instead: one HNSW graph per size (what larger blocks would cost), at --ef-construction values",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="instead: a built index against the same index saved and loaded, queries interleaved",
    )
    parser.add_argument("--ef-construction", default="40", help="with --graphs: comma-separated")
    parser.add_argument("--ef-search", default="32,64,128,192", help="with --graphs: comma-separated")
    parser.add_argument("--hnsw-m", type=int, default=16, help="with --graphs")
    parser.add_argument("--restore-probe", help=argparse.SUPPRESS)
    parser.add_argument("--probe-graphs", help=argparse.SUPPRESS)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--probe-config", help=argparse.SUPPRESS)
    parser.add_argument("--probe-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.probe, args.probe_config, Path(args.probe_dir))
        return
    if args.restore_probe:
        restore_probe(args)
        return
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    mode = next((main_mode for flag, main_mode in MODES.items() if getattr(args, flag)), main_sizes)
    mode(args, sizes)


def main_sizes(args: argparse.Namespace, sizes: list[int]) -> None:
    """The default: the apply and search costs at each of ``sizes``, against faiss's own."""
    results = []
    for size in sizes:
        print(f"... {size:,} vectors", flush=True)
        results.append(run(size, args.dim, args.applies, args.searches, args.seed))
    print(markdown(results, args.dim, args.applies, args.searches))


def main_scale(args: argparse.Namespace, sizes: list[int]) -> None:
    global BUILD_THREADS
    BUILD_THREADS = args.build_threads
    kinds = args.data.split(",")
    base = None
    if "real" in kinds:
        base = real_vectors(
            args.real_chunks, Path(tempfile.gettempdir()) / f"ragflow-bench-real-{args.real_chunks}.npy"
        )
    scale_results = []
    with tempfile.TemporaryDirectory(prefix="ragflow-bench-index-") as workdir:
        for size in sizes:
            for data_kind in kinds:
                for config in args.configs.split(","):
                    print(f"... {size:,} {data_kind} vectors, {config}", flush=True)
                    result = run_scale(size, data_kind, config, args.searches, args.seed, Path(workdir), base)
                    scale_results.append(result)
                    print(scale_markdown([result], args.searches).splitlines()[-1], flush=True)
    print(scale_markdown(scale_results, args.searches))


MODES: dict[str, Callable[[argparse.Namespace, list[int]], None]] = {
    "scale": main_scale,
    "restore": main_restore,
    "graphs": main_graphs,
    "reload": main_reload,
}
"""The benchmark's other modes by their flag, in precedence order: the first one given runs instead of
``main_sizes``."""

if __name__ == "__main__":
    main()
