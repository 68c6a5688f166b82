"""FaissIndex with compact vectors: full blocks searched through float16 or 8-bit codes, candidates re-ranked
with full-precision rows kept in files and read with pread (never mapped, so they stay out of the process's
RSS); exact top-k where the re-rank is exhaustive, files dropped with their blocks, saved and loaded with
the rows left in the index file."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ragflow.filters import compile_filter
from ragflow.indexers.faiss import FaissIndex
from ragflow.indexers.faiss._compact import DiskRows
from tests.indexers.contract import brute_force, records, unit_vectors


@pytest.mark.parametrize("rerank", [32, 200])
@pytest.mark.parametrize("vectors", ["sq8", "float16"])
def test_compact_vectors_with_exhaustive_rerank_return_the_exact_top_10(vectors: str, rerank: int) -> None:
    data = unit_vectors(2000, 32, seed=60)
    # 10 hits x 32 candidates per hit >= 256 rows per block: every live row of a block is a candidate, and
    # the best 320 of them by their codes are re-ranked; with 200 per hit, every row of the index is.
    index = FaissIndex(32, kind="hnsw", block_size=256, vectors=vectors, rerank=rerank, background=False)  # type: ignore[arg-type]
    index.apply(records(data), [])
    index.apply([], range(0, 2000, 9))
    model = {i: data[i] for i in range(2000) if i % 9}
    full = [v.block for v in index._snapshot.views if v.used == 256]
    assert len(full) == 7 and all(b.codes is not None and isinstance(b.vectors, DiskRows) for b in full)
    predicate = compile_filter("doc < `5`", None)
    allowed = {i for i in model if i % 10 < 5}
    for query in unit_vectors(20, 32, seed=61):
        hits = index.search(query, 10)
        assert [h.id for h in hits] == brute_force(model, query, 10)
        np.testing.assert_allclose([h.dist for h in hits], [1 - model[h.id] @ query for h in hits], atol=1e-5)
        assert [h.id for h in index.search(query, 10, predicate)] == brute_force(model, query, 10, allowed)


def test_compact_vectors_hold_less_memory_and_keep_recall() -> None:
    data = unit_vectors(4096, 128, seed=62)
    flat = FaissIndex(128, kind="hnsw", block_size=512, background=False)
    compact = FaissIndex(128, kind="hnsw", block_size=512, vectors="sq8", background=False)
    for index in (flat, compact):
        index.apply(records(data), [])
    # float32: 512 B of vector per row (held once, by the graph); sq8: 128 B of codes; links alike.
    assert compact.stats().memory_bytes < 0.5 * flat.stats().memory_bytes
    queries = unit_vectors(50, 128, seed=63)
    found = sum(
        len({h.id for h in compact.search(q, 10)} & {h.id for h in flat.search(q, 10)}) for q in queries
    )
    assert found / 500 >= 0.98


def test_vector_files_go_with_their_blocks(tmp_path: Path) -> None:
    data = unit_vectors(1024, 8, seed=64)
    index = FaissIndex(
        8, kind="flat", block_size=128, vectors="sq8", background=False, vector_dir=str(tmp_path)
    )
    index.apply(records(data), [])
    assert len(os.listdir(tmp_path)) == 8  # one per full block
    index.apply([], range(0, 512))  # blocks 0-3 entirely dead: compacted away
    assert len(os.listdir(tmp_path)) == 4
    assert index.count() == 512 and index.search(data[700], 1)[0].id == 700


def test_compact_index_saved_and_loaded_reads_its_rows_from_the_file(tmp_path: Path) -> None:
    data = unit_vectors(1500, 16, seed=65)
    index = FaissIndex(16, kind="hnsw", block_size=256, vectors="sq8", background=False)
    index.apply(records(data), [])
    path = str(tmp_path / "index.bin")
    index.save(path)
    loaded = FaissIndex(16, kind="hnsw", block_size=256, vectors="sq8")
    try:
        loaded.load(path)
        assert loaded.stats().graphs_pending == 0
        full = [v.block for v in loaded._snapshot.views if v.used == 256]
        assert all(
            isinstance(b.vectors, DiskRows) and b.vectors.filename == os.path.abspath(path) for b in full
        )
        assert len({b.vectors._fd for b in full}) == 1  # one descriptor for the file, not one per block
        for query in unit_vectors(10, 16, seed=66):
            assert loaded.search(query, 10) == index.search(query, 10)
        index.save(path)  # saving over the file it reads leaves the loaded index intact
        assert loaded.search(data[3], 1)[0].id == 3
    finally:
        loaded.close()


def test_disk_rows_read_any_rows_in_any_order_and_refuse_a_short_file(tmp_path: Path) -> None:
    data = unit_vectors(100, 8, seed=67)
    path = tmp_path / "rows.f32"
    path.write_bytes(b"\0" * 64 + data.tobytes())  # a section at offset 64, as in an index file
    rows = DiskRows(str(path), 100, 8, offset=64)
    assert rows.shape == (100, 8) and len(rows) == 100
    np.testing.assert_array_equal(rows[10:20], data[10:20])
    np.testing.assert_array_equal(rows[-1], data[99])
    picks = np.array([5, 3, 3, 99, 0, 4, 6])  # repeats, out of order, runs
    np.testing.assert_array_equal(rows[picks], data[picks])
    np.testing.assert_array_equal(rows[np.array([[1, 2], [3, 90]])], data[np.array([[1, 2], [3, 90]])])
    assert rows[np.zeros(0, dtype=np.int64)].shape == (0, 8)
    with pytest.raises(IndexError):
        rows[np.array([100])]
    os.unlink(path)  # an open file stays readable (a dropped block's readers finish their search)
    np.testing.assert_array_equal(rows[7], data[7])
    path.write_bytes(data[:50].tobytes())
    with pytest.raises(ValueError, match="fewer than"):
        DiskRows(str(path), 100, 8)


def mapped_files() -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split(maxsplit=5)[-1].strip() for line in maps if len(line.split()) == 6}


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc")
def test_a_compact_index_never_maps_its_full_precision_rows(tmp_path: Path) -> None:
    """The rows are read with pread: a memory map would count every page a query touched in RSS (a 1M
    index's whole 1.5 GB file after a few thousand queries)."""
    data = unit_vectors(6000, 16, seed=68)
    index = FaissIndex(16, kind="hnsw", block_size=1024, vectors="sq8", vector_dir=str(tmp_path / "rows"))
    index.apply(records(data, docs=100), [])
    index.wait_for_graphs()
    path = str(tmp_path / "index.bin")
    index.save(path)
    loaded = FaissIndex(16, kind="hnsw", block_size=1024, vectors="sq8")
    try:
        loaded.load(path)
        model = dict(enumerate(data))
        # 10% of each block: too few for its graph, its codes scanned; 1%: its few rows read and scored.
        for expression, docs in (("doc < `10`", range(10)), ("doc == `3`", [3])):
            selective = compile_filter(expression, None)
            allowed = {i for i in model if i % 100 in docs}
            for query in unit_vectors(20, 16, seed=69):
                assert loaded.search(query, 10)[0].id == brute_force(model, query, 1)[0]
                assert [h.id for h in loaded.search(query, 3, selective)] == brute_force(
                    model, query, 3, allowed
                )
        ours = {os.path.abspath(path)} | {str(p) for p in (tmp_path / "rows").iterdir()}
        assert not ours & mapped_files()
    finally:
        loaded.close()
        index.close()


def test_full_compact_blocks_go_to_disk_ahead_of_their_graphs() -> None:
    """A bulk load (a restore) outruns graph builds: rows go to their files in a thread of their own, so
    float32 rows do not pile up in memory while the graphs wait."""
    data = unit_vectors(2048, 16, seed=70)
    index = FaissIndex(16, kind="hnsw", block_size=256, vectors="sq8")
    builder = index._graphs
    release = threading.Event()
    build = builder._work

    def stalled(number: int) -> None:
        release.wait(30)
        build(number)

    builder._work = stalled  # type: ignore[method-assign]
    try:
        index.apply(records(data), [])
        deadline = time.monotonic() + 30
        full = [v.block for v in index._snapshot.views if v.used == 256]
        while not all(isinstance(b.vectors, DiskRows) for b in full) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(full) == 8 and all(isinstance(b.vectors, DiskRows) for b in full)
        assert index.stats().graphs_pending == 8  # no graph built yet: searched exactly, from disk
        model = dict(enumerate(data))
        for query in unit_vectors(5, 16, seed=71):
            assert [h.id for h in index.search(query, 10)] == brute_force(model, query, 10)
    finally:
        release.set()
        index.wait_for_graphs()
        index.close()
    assert index.stats().graphs_pending == 0
