"""FaissIndex with compact vectors: full blocks searched through float16 or 8-bit codes, candidates re-ranked
with full-precision rows kept in memory-mapped files; exact top-k where the re-rank is exhaustive, files
dropped with their blocks, saved and loaded with the rows left in the index file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ragflow.filters import compile_filter
from ragflow.indexers.faiss import FaissIndex
from tests.indexers.contract import brute_force, records, unit_vectors


@pytest.mark.parametrize("vectors", ["sq8", "float16"])
def test_compact_vectors_with_exhaustive_rerank_return_the_exact_top_10(vectors: str) -> None:
    data = unit_vectors(2000, 32, seed=60)
    # 10 hits x 32 candidates per hit >= 256 rows per block: every row is re-ranked.
    index = FaissIndex(32, kind="hnsw", block_size=256, vectors=vectors, rerank=32, background=False)  # type: ignore[arg-type]
    index.apply(records(data), [])
    index.apply([], range(0, 2000, 9))
    model = {i: data[i] for i in range(2000) if i % 9}
    full = [v.block for v in index._snapshot.views if v.used == 256]
    assert len(full) == 7 and all(b.codes is not None and isinstance(b.vectors, np.memmap) for b in full)
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


def test_compact_index_saved_and_loaded_maps_its_rows_from_the_file(tmp_path: Path) -> None:
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
            isinstance(b.vectors, np.memmap) and b.vectors.filename == os.path.abspath(path) for b in full
        )
        for query in unit_vectors(10, 16, seed=66):
            assert loaded.search(query, 10) == index.search(query, 10)
        index.save(path)  # saving over the mapped file leaves the loaded index intact
        assert loaded.search(data[3], 1)[0].id == 3
    finally:
        loaded.close()
