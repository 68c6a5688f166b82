"""FaissIndex's HNSW graphs at scale, shrunk to test size: the automatic switch from exact search to graphs
at a configured size (queries keep working through it), graphs saved with the index and restored without a
rebuild, and a damaged or unfitting graph file rebuilt in the background and reported."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from ragflow.errors import IndexStoreError
from ragflow.filters import compile_filter
from ragflow.indexers.faiss import FaissIndex
from tests.indexers.contract import Vectors, brute_force, records, unit_vectors


def ids(index: FaissIndex, query: Vectors, k: int = 10) -> list[int]:
    return [hit.id for hit in index.search(query, k)]


def graphs_built(index: FaissIndex) -> int:
    stats = index.stats()
    return stats.blocks - 1 - stats.graphs_pending if stats.graphs else 0


def test_auto_switches_to_graphs_at_the_configured_size_and_no_query_fails_meanwhile() -> None:
    vectors = unit_vectors(3000, 16, seed=40)
    index = FaissIndex(16, kind="auto", hnsw_threshold=1500, block_size=256)
    predicate = compile_filter("doc == `3`", None)
    failures: list[str] = []
    searched = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal searched
        queries = unit_vectors(50, 16, seed=41)
        while not done.is_set():
            for query in queries:
                try:
                    count = index.count()
                    hits = index.search(query, 10)
                    # A count taken before the search is a lower bound: applies only add here.
                    if len(hits) < min(10, count) or len({h.id for h in hits}) != len(hits):
                        failures.append(f"{len(hits)} hits at count {count}")
                    if any(h.metadata["doc"] != 3 for h in index.search(query, 5, predicate)):
                        failures.append("a filtered search returned a chunk the filter rejects")
                except Exception as error:  # any failure is what this test is about
                    failures.append(repr(error))
                searched += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for start in range(0, 1400, 100):
            index.apply(records(vectors[start : start + 100], list(range(start, start + 100))), [])
        assert index.count() == 1400 and not index.stats().graphs  # below the threshold: exact
        index.apply(records(vectors[1400:1499], list(range(1400, 1499))), [])
        assert not index.stats().graphs
        index.apply(records(vectors[1499:1500], [1499]), [])
        assert index.stats().graphs  # switched at 1500 chunks exactly
        for start in range(1500, 3000, 100):
            index.apply(records(vectors[start : start + 100], list(range(start, start + 100))), [])
        index.wait_for_graphs()
    finally:
        done.set()
        thread.join()
        index.close()
    assert searched > 0 and failures == []
    stats = index.stats()
    assert stats.graphs_pending == 0 and graphs_built(index) == stats.blocks - 1 == 11  # every full block
    model = dict(enumerate(vectors))
    queries = unit_vectors(30, 16, seed=42)
    found = sum(len(set(ids(index, q)) & set(brute_force(model, q, 10))) for q in queries)
    assert found / 300 >= 0.9


def test_flat_and_small_auto_indexes_never_build_graphs() -> None:
    vectors = unit_vectors(1200, 8, seed=43)
    for index in (FaissIndex(8, kind="flat", block_size=128), FaissIndex(8, block_size=128)):
        index.apply(records(vectors), [])
        index.wait_for_graphs()
        assert not index.stats().graphs and graphs_built(index) == 0
        model = dict(enumerate(vectors))
        for query in unit_vectors(5, 8, seed=44):
            assert ids(index, query) == brute_force(model, query, 10)


def saved_hnsw(tmp_path: Path, **options: object) -> tuple[FaissIndex, str, Vectors]:
    vectors = unit_vectors(2000, 16, seed=45)
    index = FaissIndex(16, kind="hnsw", block_size=256, background=False, **options)
    index.apply(records(vectors), [])
    index.apply([], range(0, 2000, 7))
    path = str(tmp_path / "index.bin")
    index.save(path)
    return index, path, vectors


def test_graphs_are_saved_and_restored_without_a_rebuild(tmp_path: Path) -> None:
    index, path, _ = saved_hnsw(tmp_path)
    loaded = FaissIndex(16, kind="hnsw", block_size=256)
    try:
        loaded.load(path)
        assert loaded.stats().graphs_pending == 0  # adopted at once: nothing rebuilt in the background
        for query in unit_vectors(20, 16, seed=46):
            assert ids(loaded, query) == ids(index, query)
            assert loaded.search(query, 10) == index.search(query, 10)
    finally:
        loaded.close()


def test_an_auto_index_restored_past_its_threshold_keeps_its_graphs(tmp_path: Path) -> None:
    index, path, _ = saved_hnsw(tmp_path)
    loaded = FaissIndex(16, kind="auto", hnsw_threshold=1000, block_size=256, background=False)
    loaded.load(path)
    assert loaded.stats().graphs and loaded.stats().graphs_pending == 0
    for query in unit_vectors(10, 16, seed=47):
        assert ids(loaded, query) == ids(index, query)


def graph_sections(path: str) -> list[tuple[int, int, int]]:
    """Where each block's graph is in a saved index file (offset, length, CRC), from its header."""
    with open(path, "rb") as file:
        file.seek(-24, os.SEEK_END)
        (offset,) = struct.unpack("<Q", file.read(8))
        file.seek(offset)
        header = pickle.load(file)
    return [block["graph"] for block in header["blocks"] if block["graph"] is not None]


def test_a_damaged_graph_is_reported_searched_exactly_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index, path, vectors = saved_hnsw(tmp_path)
    sections = graph_sections(path)
    assert len(sections) == 8  # 7 full blocks and the tail (208 rows)
    offset, length, _ = sections[2]
    with open(path, "r+b") as file:  # flip bytes in the middle of block 2's graph
        file.seek(offset + length // 2)
        data = file.read(16)
        file.seek(offset + length // 2)
        file.write(bytes(b ^ 0xFF for b in data))
    loaded = FaissIndex(16, kind="hnsw", block_size=256)
    try:
        with caplog.at_level(logging.WARNING, logger="ragflow.indexers.faiss"):
            loaded.load(path)
        assert any("graph of block 2" in r.message and "damaged" in r.message for r in caplog.records)
        # Meanwhile the block is searched exactly: every result is a live chunk at its true distance.
        model = {i: vectors[i] for i in range(2000) if i % 7}
        for query in unit_vectors(10, 16, seed=48):
            hits = loaded.search(query, 10)
            assert len(hits) == 10 and all(h.id % 7 for h in hits)
            np.testing.assert_allclose(
                [h.dist for h in hits], [1 - model[h.id] @ query for h in hits], atol=1e-5
            )
        loaded.wait_for_graphs()
        assert loaded.stats().graphs_pending == 0  # rebuilt in the background
        for query in unit_vectors(20, 16, seed=49):
            assert len(set(ids(loaded, query)) & set(ids(index, query))) >= 8
    finally:
        loaded.close()


def test_a_graph_that_does_not_fit_the_configuration_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, path, vectors = saved_hnsw(tmp_path)  # float32 graphs
    loaded = FaissIndex(16, kind="hnsw", block_size=256, vectors="sq8", background=False)
    with caplog.at_level(logging.WARNING, logger="ragflow.indexers.faiss"):
        loaded.load(path)
    assert any("does not fit" in r.message for r in caplog.records)
    assert loaded.stats().graphs_pending == 0  # rebuilt inline (background=False)
    assert ids(loaded, vectors[1], 1) == [1]


def test_a_truncated_index_file_is_refused(tmp_path: Path) -> None:
    _, path, _ = saved_hnsw(tmp_path)
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) - 10)
    index = FaissIndex(16)
    with pytest.raises(IndexStoreError, match="cannot load"):
        index.load(path)
    assert index.count() == 0


def test_the_tail_graph_grows_with_the_tail_and_its_newest_rows_are_scored_exactly() -> None:
    vectors = unit_vectors(1000, 16, seed=50)
    index = FaissIndex(16, kind="hnsw", block_size=1024, background=False)  # graph steps of 64 rows
    index.apply(records(vectors[:600]), [])
    (view,) = index._snapshot.views
    assert view.block.hnsw is not None and view.block.hnsw.ntotal == 600  # the tail's rows so far
    index.apply(records(vectors[600:630], list(range(600, 630))), [])
    (view,) = index._snapshot.views
    assert view.block.hnsw.ntotal == 600  # 30 new rows: scored exactly until 64 have come
    model = dict(enumerate(vectors[:630]))
    for i in (3, 599, 600, 629):
        assert ids(index, vectors[i], 1) == [i]
    queries = unit_vectors(30, 16, seed=51)
    found = sum(len(set(ids(index, q)) & set(brute_force(model, q, 10))) for q in queries)
    assert found / 300 >= 0.9
    index.apply(records(vectors[630:], list(range(630, 1000))), [])
    (view,) = index._snapshot.views
    assert view.block.hnsw.ntotal == 1000


# ------------------------------------------------------------------- graphs kept across a store's restart


def restore(index: FaissIndex, vectors: Vectors, chunk_ids: list[int], batch: int = 300) -> None:
    """What a store's restore does: every saved chunk upserted again, in its own order, in batches."""
    for start in range(0, len(chunk_ids), batch):
        part = chunk_ids[start : start + batch]
        index.apply(records(vectors[part], part), [])


def test_graphs_in_graph_dir_are_adopted_by_a_restore_and_return_the_same_ids(tmp_path: Path) -> None:
    vectors = unit_vectors(2200, 16, seed=52)
    before = FaissIndex(16, kind="auto", hnsw_threshold=500, block_size=256, graph_dir=str(tmp_path))
    try:
        before.apply(records(vectors), [])
        before.wait_for_graphs()
    finally:
        before.close()
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".graph")]) == 8  # full blocks, not the tail
    after = FaissIndex(16, kind="auto", hnsw_threshold=500, block_size=256, graph_dir=str(tmp_path))
    try:
        assert after.count() == 0 and after.search(vectors[0], 5) == []  # dormant: nothing visible yet
        # The tail's 152 chunks first (a batch that revives nothing), then the rest in another order.
        shuffled = np.random.default_rng(53).permutation(2048).tolist()
        restore(after, vectors, list(range(2048, 2200)) + shuffled)
        after.wait_for_graphs()
        stats = after.stats()
        assert stats.count == 2200 and stats.blocks == 9 and stats.graphs_pending == 0  # nothing rebuilt
        for query in unit_vectors(20, 16, seed=54):
            assert ids(after, query) == ids(before, query)
        assert after.search(vectors[7], 1)[0].text == "text 7"
    finally:
        after.close()


def test_rows_not_restored_never_come_back_and_their_blocks_are_compacted(tmp_path: Path) -> None:
    vectors = unit_vectors(2048, 16, seed=55)
    before = FaissIndex(16, kind="hnsw", block_size=256, background=False, graph_dir=str(tmp_path))
    before.apply(records(vectors), [])
    after = FaissIndex(16, kind="hnsw", block_size=256, background=False, graph_dir=str(tmp_path))
    gone = set(range(0, 512)) | set(range(1000, 1100))  # documents deleted while the index was down
    changed = 1500  # a chunk whose vector changed while down: appended, not revived
    kept = [i for i in range(2048) if i not in gone and i != changed]
    restore(after, vectors, kept)
    # The first live change after the restore: the changed chunk's new version (a new id) replaces it.
    after.apply(records(unit_vectors(1, 16, seed=56), [5000]), [changed])
    assert after.count() == len(kept) + 1
    for i in sorted(gone)[::25]:
        assert after.search(vectors[i], 1)[0].id != i
    assert ids(after, vectors[changed], 1) != [changed]  # the old version of that chunk is not served
    stats = after.stats()
    assert stats.rows < 2048  # blocks 0 and 1 (all dead) were dropped, and their graph files with them
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".graph")]) == stats.blocks - 1


def test_a_damaged_graph_file_is_reported_and_its_block_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vectors = unit_vectors(1024, 16, seed=57)
    FaissIndex(16, kind="hnsw", block_size=256, background=False, graph_dir=str(tmp_path)).apply(
        records(vectors), []
    )
    victim = sorted(n for n in os.listdir(tmp_path) if n.endswith(".graph"))[0]
    with open(tmp_path / victim, "r+b") as file:
        file.seek(-100, os.SEEK_END)
        file.write(b"\0" * 50)
    with caplog.at_level(logging.WARNING, logger="ragflow.indexers.faiss"):
        after = FaissIndex(16, kind="hnsw", block_size=256, background=False, graph_dir=str(tmp_path))
    assert any(victim in r.message and "damaged" in r.message for r in caplog.records)
    restore(after, vectors, list(range(1024)))
    assert after.count() == 1024 and after.stats().graphs_pending == 0
    model = dict(enumerate(vectors))
    for query in unit_vectors(10, 16, seed=58):
        assert len(set(ids(after, query)) & set(brute_force(model, query, 10))) >= 8


def test_a_configuration_file_sets_the_index_options_with_paths_relative_to_it(tmp_path: Path) -> None:
    from ragflow.config import parse_config

    text = (
        "index:\n  kind: faiss\n  faiss_kind: auto\n  hnsw_threshold: 1000\n  vectors: sq8\n"
        "  graph_dir: state/graphs\n"
    )
    index = parse_config(text, base_dir=tmp_path).build_index(8)
    assert isinstance(index, FaissIndex)
    assert (index.kind, index.hnsw_threshold, index.vectors) == ("auto", 1000, "sq8")
    assert index.graph_dir == str(tmp_path / "state" / "graphs") and os.path.isdir(index.graph_dir)


def test_a_store_restarted_over_its_state_adopts_the_graphs_kept_in_graph_dir(tmp_path: Path) -> None:
    from ragflow.connectors.folder import FolderSource
    from ragflow.store import DocumentStore
    from tests.fakes.hashing_embedder import HashingEmbedder

    folder, state = tmp_path / "docs", tmp_path / "state"
    folder.mkdir()
    rng = np.random.default_rng(59)
    words = [f"w{i}" for i in range(400)]
    for doc in range(120):
        paragraphs = [" ".join(rng.choice(words, 40)) for _ in range(8)]
        (folder / f"doc{doc:03d}.md").write_text("\n\n".join(paragraphs))

    def store() -> DocumentStore:
        index = FaissIndex(64, kind="hnsw", block_size=128, graph_dir=str(state / "graphs"))
        embedder = HashingEmbedder(max_tokens=40)
        return DocumentStore(
            FolderSource(folder, reconcile_interval=None), embedder=embedder, state_dir=state, index=index
        )

    first = store()
    first.start()
    assert first.wait_until_fresh(60)
    first.stop()
    assert isinstance(first.index, FaissIndex)
    first.index.wait_for_graphs()
    first.index.close()
    saved = first.index.stats()
    assert saved.blocks >= 4
    queries = rng.standard_normal((10, 64)).astype(np.float32)
    before = [ids(first.index, q) for q in queries]

    second = store()  # the restore refills the index from the saved documents, reviving the kept graphs
    assert isinstance(second.index, FaissIndex)
    try:
        stats = second.index.stats()
        assert stats.count == saved.count and stats.blocks == saved.blocks and stats.graphs_pending == 0
        assert [ids(second.index, q) for q in queries] == before
        second.start()
        assert second.wait_until_fresh(60)
    finally:
        second.stop()
        second.index.close()


def test_an_index_file_of_the_previous_format_still_loads(tmp_path: Path) -> None:
    vectors = unit_vectors(300, 8, seed=60)
    live = np.packbits(np.ones(300, dtype=np.uint8), bitorder="little")
    payload = {  # what format 1 wrote: one pickle, vectors and serialized graphs inside it
        "format": "ragflow-faiss/1",
        "dim": 8,
        "block_size": 65536,
        "groups": [{"doc": 0}],
        "blocks": [
            {
                "vectors": vectors,
                "ids": np.arange(300, dtype=np.int64),
                "gids": np.zeros(300, dtype=np.int64),
                "texts": [f"text {i}" for i in range(300)],
                "live": live,
                "hnsw": None,
            }
        ],
    }
    path = tmp_path / "old.bin"
    path.write_bytes(pickle.dumps(payload))
    index = FaissIndex(8)
    index.load(str(path))
    assert index.count() == 300
    assert index.search(vectors[42], 1)[0].text == "text 42"
