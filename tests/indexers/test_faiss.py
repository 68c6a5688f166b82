"""FaissIndex beyond the VectorIndex contract (tests/indexers/test_faiss_contract.py runs that): exactness
against brute force across blocks, tombstones and compaction, batched search, filter evaluation once per
metadata value, its index file, HNSW recall and graph building."""

from __future__ import annotations

import importlib.metadata
import itertools
import os
import types
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragflow.documents import VectorIndex, VectorRecord
from ragflow.errors import ConfigError, IndexStoreError
from ragflow.filters import MetadataFilter, compile_filter
from ragflow.indexers.faiss import FaissIndex
from tests.indexers.contract import Vectors, brute_force, records, unit_vectors


def hit_ids(index: FaissIndex, query: Vectors, k: int, predicate: Any = None) -> list[int]:
    return [hit.id for hit in index.search(query, k, predicate)]


# ------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("k", [1, 10, 100, 5000])
def test_flat_search_equals_brute_force(k: int) -> None:
    vectors = unit_vectors(3000, 48, seed=1)
    index = FaissIndex(48, block_size=512)
    index.apply(records(vectors), [])
    model = dict(enumerate(vectors))
    for query in unit_vectors(5, 48, seed=2):
        hits = index.search(query, k)
        assert [h.id for h in hits] == brute_force(model, query, k)
        expected_dist = 1.0 - vectors[[h.id for h in hits]] @ query
        np.testing.assert_allclose([h.dist for h in hits], expected_dist, atol=1e-5)
        assert all(a.dist <= b.dist for a, b in itertools.pairwise(hits))


def test_search_batch_equals_single_searches_with_and_without_filter() -> None:
    vectors = unit_vectors(2000, 32, seed=3)
    index = FaissIndex(32, block_size=256)
    index.apply(records(vectors), [])
    index.apply([], range(0, 2000, 3))
    queries = unit_vectors(25, 32, seed=4)  # above faiss's BLAS threshold: the batched path
    for predicate in (None, compile_filter("doc < `3`", None)):
        batched = index.search_batch(queries, 7, predicate)
        assert [[h.id for h in hits] for hits in batched] == [
            hit_ids(index, q, 7, predicate) for q in queries
        ]


# ------------------------------------------------------------------------------ upserts, deletes


def test_deleted_chunks_are_never_returned_and_k_live_results_remain() -> None:
    vectors = unit_vectors(4000, 16, seed=7)
    index = FaissIndex(16, block_size=512, compact_fraction=0.95)  # keep the tombstones in place
    index.apply(records(vectors), [])
    deleted = {i for i in range(4000) if i % 10}
    index.apply([], deleted)
    model = {i: vectors[i] for i in range(4000) if i not in deleted}
    assert index.count() == 400
    assert index.stats().rows == 4000
    for query in unit_vectors(10, 16, seed=8):
        ids = hit_ids(index, query, 25)
        assert len(ids) == 25
        assert not deleted & set(ids)
        assert ids == brute_force(model, query, 25)


def test_compaction_drops_dead_rows_and_keeps_results_exact() -> None:
    vectors = unit_vectors(2048, 16, seed=9)
    index = FaissIndex(16, block_size=256)
    index.apply(records(vectors), [])
    deleted = set(range(0, 2048, 3))  # a third of every block
    index.apply([], deleted)
    stats = index.stats()
    assert stats.count == 2048 - len(deleted)
    assert stats.rows == stats.count
    model = {i: vectors[i] for i in range(2048) if i not in deleted}
    for query in unit_vectors(5, 16, seed=10):
        assert hit_ids(index, query, 30) == brute_force(model, query, 30)
    # Deleting after compaction moved rows must still find them.
    index.apply([], list(model)[:100])
    assert index.count() == len(model) - 100


def test_churn_on_few_ids_keeps_storage_bounded() -> None:
    index = FaissIndex(8, block_size=1024)
    vectors = unit_vectors(10, 8, seed=11)
    for version in range(3000):
        index.apply([VectorRecord(i, vectors[i], f"v{version}", {}) for i in range(10)], [])
    stats = index.stats()
    assert stats.count == 10
    assert stats.rows < 1024
    assert {h.text for h in index.search(vectors[0], 10)} == {"v2999"}


def test_invalid_upsert_raises_and_applies_nothing() -> None:
    index = FaissIndex(4)
    good = VectorRecord(1, unit_vectors(1, 4, 0)[0], "ok", {})
    for bad in (
        VectorRecord(2, np.ones(5, np.float32), "wrong dim", {}),
        VectorRecord(2, np.zeros(4, np.float32), "zero", {}),
        VectorRecord(2, np.array([np.nan, 1, 1, 1], np.float32), "nan", {}),
        VectorRecord(2**64, np.ones(4, np.float32), "huge id", {}),
    ):
        with pytest.raises(IndexStoreError, match=r"chunk|64-bit"):
            index.apply([good, bad], [])
    assert index.count() == 0
    with pytest.raises(IndexStoreError, match="shape"):
        index.search(np.ones(3, np.float32), 1)


def test_constructor_rejects_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="kind"):
        FaissIndex(4, kind="ivf")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="block_size"):
        FaissIndex(4, block_size=100)
    with pytest.raises(ConfigError, match="dim"):
        FaissIndex(0)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3)), max_size=30),
            st.lists(st.integers(0, 40), max_size=15),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_index_content_equals_model_after_any_sequence_of_applies(
    batches: list[tuple[list[tuple[int, int]], list[int]]],
) -> None:
    dim = 6
    pool = unit_vectors(200, dim, seed=12)
    index = FaissIndex(dim, block_size=16, compact_fraction=0.2)
    model: dict[int, tuple[Vectors, str, int]] = {}
    query = unit_vectors(1, dim, seed=13)[0]
    for step, (upserts, deletes) in enumerate(batches):
        batch = [
            VectorRecord(
                i, pool[(i * 7 + version * 13 + step) % 200], f"{i}@{step}.{version}", {"doc": version}
            )
            for i, version in upserts
        ]
        index.apply(batch, deletes)
        for i in deletes:
            model.pop(i, None)
        for record in batch:
            model[record.id] = (record.vector, record.text, record.metadata["doc"])
        hits = index.search(query, 1000)
        assert index.count() == len(model)
        assert {h.id: (h.text, h.metadata["doc"]) for h in hits} == {
            i: (t, d) for i, (_, t, d) in model.items()
        }
        vectors = {i: v for i, (v, _, _) in model.items()}
        dists = [h.dist for h in hits]
        assert dists == sorted(dists)
        np.testing.assert_allclose(
            dists, [1 - float(vectors[i] @ query) for i in brute_force(vectors, query, 1000)], atol=1e-5
        )
        wanted = {i for i, (_, _, d) in model.items() if d == 1}
        assert {h.id for h in index.search(query, 1000, lambda m: m["doc"] == 1)} == wanted


# ---------------------------------------------------------------------------------------- filters


def test_filtered_search_returns_exact_top_k_among_matching() -> None:
    vectors = unit_vectors(5000, 24, seed=14)
    index = FaissIndex(24, block_size=1024)
    index.apply(records(vectors, docs=500), [])
    index.apply([], range(0, 5000, 7))
    model = {i: vectors[i] for i in range(5000) if i % 7}
    for expression, k in [
        ("doc < `250`", 10),  # half the documents
        ("doc == `17`", 10),  # 10 chunks of 5000, one deleted: fewer than k exist
        ("doc == `17` || doc == `401`", 5),  # rare, more than k exist
        ("doc == `-1`", 10),  # nothing matches
    ]:
        predicate = compile_filter(expression, None)
        assert predicate is not None
        allowed = {i for i in model if predicate({"doc": i % 500})}
        for query in unit_vectors(3, 24, seed=15):
            assert hit_ids(index, query, k, predicate) == brute_force(model, query, k, allowed)


def test_frozen_metadata_is_filtered_as_json_and_raw_predicate_errors_propagate() -> None:
    vectors = unit_vectors(4, 8, seed=29)
    index = FaissIndex(8)
    index.apply(
        [
            VectorRecord(i, vectors[i], "", types.MappingProxyType({"tags": ("x",) if i % 2 else ("y",)}))
            for i in range(4)
        ],
        [],
    )
    hits = index.search(vectors[0], 10, compile_filter("contains(tags, 'x')", None))
    assert [(h.id, dict(h.metadata)) for h in sorted(hits, key=lambda h: h.id)] == [
        (1, {"tags": ("x",)}),
        (3, {"tags": ("x",)}),
    ]
    with pytest.raises(KeyError):
        index.search(vectors[0], 10, lambda metadata: metadata["missing"])


class CountingFilter(MetadataFilter):
    __slots__ = ("calls",)

    def __init__(self, expression: str) -> None:
        super().__init__(expression, None)
        self.calls = 0

    def __call__(self, metadata: Mapping[str, Any]) -> bool:
        self.calls += 1
        return super().__call__(metadata)

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def test_predicate_runs_once_per_distinct_metadata_not_per_chunk() -> None:
    vectors = unit_vectors(1000, 8, seed=17)
    index = FaissIndex(8)
    index.apply(records(vectors, docs=20), [])  # 20 documents of 50 chunks
    calls = 0

    def predicate(metadata: Mapping[str, Any]) -> bool:
        nonlocal calls
        calls += 1
        return bool(metadata["doc"] == 3)

    assert len(index.search(vectors[0], 100, predicate)) == 50
    assert calls == 20


def test_compiled_filter_answers_are_reused_and_extended_incrementally() -> None:
    vectors = unit_vectors(400, 8, seed=18)
    index = FaissIndex(8)
    index.apply(records(vectors, docs=40), [])
    predicate = CountingFilter("doc == `5`")
    assert {h.id for h in index.search(vectors[0], 100, predicate)} == set(range(5, 400, 40))
    assert predicate.calls == 40
    index.search(vectors[1], 100, predicate)
    assert predicate.calls == 40
    new = VectorRecord(10_000, vectors[2], "new doc", {"doc": 5, "path": "new"})
    index.apply([new], [5])
    assert {h.id for h in index.search(vectors[0], 100, predicate)} == set(range(45, 400, 40)) | {10_000}
    assert predicate.calls == 41


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "flat"},
        {"kind": "hnsw", "background": False},
        {"kind": "hnsw", "vectors": "sq8", "background": False},
    ],
)
def test_a_repeated_filter_follows_every_apply(options: dict[str, Any]) -> None:
    """What a kept filter allows in each block is reused between searches: it must follow every apply
    (rows deleted, added, moved by compaction, their metadata changed)."""
    rng = np.random.default_rng(19)
    pool = unit_vectors(300, 8, seed=20)
    index = FaissIndex(8, block_size=32, **options)
    predicate = compile_filter("doc == `1`", None)
    model: dict[int, tuple[int, Vectors]] = {}
    try:
        for step in range(80):
            chosen = rng.choice(200, size=int(rng.integers(1, 25)), replace=False).tolist()
            upserts = [
                VectorRecord(i, pool[(i * 7 + step) % 300], f"{i}@{step}", {"doc": int(rng.integers(3))})
                for i in chosen
            ]
            deletes = rng.choice(200, size=int(rng.integers(0, 12)), replace=False).tolist()
            index.apply(upserts, deletes)
            for i in deletes:
                model.pop(i, None)
            for record in upserts:
                model[record.id] = (record.metadata["doc"], record.vector)
            query = pool[step]
            wanted = {i for i, (doc, _) in model.items() if doc == 1}
            hits = index.search(query, 1000, predicate)
            assert {h.id for h in hits} == wanted
            vectors = {i: v for i, (_, v) in model.items()}
            assert hit_ids(index, query, 3, predicate) == brute_force(vectors, query, 3, wanted)
    finally:
        index.close()


def test_dead_metadata_groups_are_released_without_breaking_results() -> None:
    index = FaissIndex(4, block_size=64)
    vectors = unit_vectors(5, 4, seed=19)
    for version in range(2500):  # every version has new metadata: old groups die
        index.apply([VectorRecord(i, vectors[i], "", {"version": version}) for i in range(5)], [])
    groups = index._groups.values
    assert len(groups) - sum(g is None for g in groups) <= 1100
    assert index.stats().groups == 1
    predicate = compile_filter("version == `2499`", None)
    assert len(index.search(vectors[0], 10, predicate)) == 5
    assert index.search(vectors[0], 10, compile_filter("version == `5`", None)) == []


# ----------------------------------------------------------------------------------- persistence


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_save_load_round_trip(tmp_path: Any, kind: str) -> None:
    vectors = unit_vectors(1500, 16, seed=21)
    index = FaissIndex(16, kind=kind, block_size=256, background=False)  # type: ignore[arg-type]
    index.apply(records(vectors), [])
    index.apply([], range(0, 1500, 5))
    path = str(tmp_path / "index.bin")
    index.save(path)
    index.save(path)  # replacing an existing file
    assert os.listdir(tmp_path) == ["index.bin"]
    loaded = FaissIndex(16, kind=kind, block_size=256, background=False)  # type: ignore[arg-type]
    loaded.load(path)
    assert loaded.count() == index.count() == 1200
    predicate = compile_filter("doc == `3`", None)
    for query in unit_vectors(5, 16, seed=22):
        assert loaded.search(query, 20) == index.search(query, 20)
        assert loaded.search(query, 20, predicate) == index.search(query, 20, predicate)
    if kind == "hnsw":
        assert loaded.stats().graphs_pending == 0
    # The loaded index keeps working: upserts replace, deletes remove.
    loaded.apply([VectorRecord(1, vectors[0], "replaced", {})], [2])
    assert loaded.count() == 1199
    assert loaded.search(vectors[0], 1)[0].text == "replaced"


def test_load_into_another_block_size_rebuilds_layout(tmp_path: Any) -> None:
    vectors = unit_vectors(700, 8, seed=23)
    index = FaissIndex(8, block_size=128)
    index.apply(records(vectors), range(0, 700, 2))
    path = str(tmp_path / "index.bin")
    index.save(path)
    other = FaissIndex(8, block_size=64)
    other.load(path)
    query = unit_vectors(1, 8, seed=24)[0]
    assert other.search(query, 50) == index.search(query, 50)


def test_load_errors_name_the_problem_and_keep_contents(tmp_path: Any) -> None:
    index = FaissIndex(8)
    index.apply(records(unit_vectors(10, 8, seed=25)), [])
    with pytest.raises(IndexStoreError, match="cannot load"):
        index.load(str(tmp_path / "missing.bin"))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(IndexStoreError):
        index.load(str(garbage))
    other = tmp_path / "other.bin"
    FaissIndex(4).save(str(other))
    with pytest.raises(IndexStoreError, match="4-d"):
        index.load(str(other))
    assert index.count() == 10
    with pytest.raises(IndexStoreError, match="cannot save"):
        index.save(str(tmp_path / "no" / "such" / "dir.bin"))


# ------------------------------------------------------------------------------------------ HNSW


def recall_at_10(approx: FaissIndex, exact: FaissIndex, queries: Vectors) -> float:
    found = sum(len(set(hit_ids(approx, q, 10)) & set(hit_ids(exact, q, 10))) for q in queries)
    return found / (10 * len(queries))


def test_hnsw_recall_and_deletes() -> None:
    vectors = unit_vectors(5000, 32, seed=26)
    hnsw = FaissIndex(32, kind="hnsw", block_size=1024, background=False)
    flat = FaissIndex(32)
    deleted = set(range(0, 5000, 10))
    for index in (hnsw, flat):
        index.apply(records(vectors), [])
        index.apply([], deleted)
    assert hnsw.stats().graphs_pending == 0
    queries = unit_vectors(100, 32, seed=27)
    assert recall_at_10(hnsw, flat, queries) >= 0.9
    for query in queries:
        ids = hit_ids(hnsw, query, 10)
        assert len(ids) == 10 and not deleted & set(ids)
    # A rare filter is searched exactly, so it returns precisely the matching top-k.
    predicate = compile_filter("doc == `4`", None)
    for query in queries[:10]:
        assert hit_ids(hnsw, query, 10, predicate) == hit_ids(flat, query, 10, predicate)


def test_hnsw_graphs_build_in_background() -> None:
    vectors = unit_vectors(2100, 16, seed=28)
    index = FaissIndex(16, kind="hnsw", block_size=512)
    try:
        index.apply(records(vectors), [])
        assert len(index.search(vectors[0], 10)) == 10  # searchable while graphs are pending
        index.wait_for_graphs()
        assert index.stats().graphs_pending == 0
        assert index.stats().blocks == 5
        assert hit_ids(index, vectors[0], 1) == [0]
    finally:
        index.close()


# ------------------------------------------------------------------------------------ wiring


def test_is_the_registered_faiss_indexer_and_a_vector_index() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="ragflow.indexers") if e.name == "faiss"]
    assert entry.load() is FaissIndex
    index: VectorIndex = FaissIndex(4)
    assert index.count() == 0
