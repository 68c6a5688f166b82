"""A store with a state directory keeps the faiss index's HNSW graphs in its ``graphs`` folder without
being told to: a restarted store adopts them instead of rebuilding them, a damaged graph file is rebuilt
with a warning, stale graphs of an emptied state are deleted, explicit configuration overrides the
default, and removing the root generation removes its graphs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.indexers.faiss import FaissIndex
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.indexers.test_faiss_graphs import ids

DIM = 64


def graph_files(folder: Path) -> dict[str, int]:
    """The graph files in ``folder``, by name, with their modification times."""
    return {n: os.stat(folder / n).st_mtime_ns for n in os.listdir(folder) if n.endswith(".graph")}


def full_block_stems(index: FaissIndex) -> set[str]:
    return {
        v.block.stem for v in index._snapshot.views if v.used == index.block_size and v.block.stem is not None
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """120 documents of 8 paragraphs of random words: several full blocks of 128 chunks."""
    docs = tmp_path / "docs"
    docs.mkdir()
    rng = np.random.default_rng(61)
    words = [f"w{i}" for i in range(400)]
    for doc in range(120):
        paragraphs = [" ".join(rng.choice(words, 40)) for _ in range(8)]
        (docs / f"doc{doc:03d}.md").write_text("\n\n".join(paragraphs))
    return docs


def store(folder: Path, state: Path, **options: object) -> DocumentStore:
    """A store on ``state`` whose index is given no ``graph_dir``."""
    index = FaissIndex(DIM, kind="hnsw", block_size=128, **options)
    return DocumentStore(
        FolderSource(folder, reconcile_interval=None),
        embedder=HashingEmbedder(DIM, max_tokens=40),
        state_dir=state,
        index=index,
    )


def indexed(folder: Path, state: Path) -> tuple[FaissIndex, list[list[int]]]:
    """Index ``folder`` into a store on ``state``, stop it with its graphs built; its index and the ids
    ten fixed queries find in it."""
    first = store(folder, state)
    first.start()
    assert first.wait_until_fresh(60)
    first.stop()
    index = first.index
    assert isinstance(index, FaissIndex)
    index.wait_for_graphs()
    index.close()
    queries = np.random.default_rng(62).standard_normal((10, DIM)).astype(np.float32)
    return index, [ids(index, q) for q in queries]


def test_a_store_keeps_graphs_in_its_state_dir_and_a_restart_adopts_them(
    folder: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    before, found = indexed(folder, state)
    graphs = state / "graphs"
    assert before.graph_dir == str(graphs)
    saved = graph_files(graphs)
    stats = before.stats()
    # every full block's graph (here every block is full: 15 x 128 chunks)
    assert stats.blocks >= 4 and {n.removesuffix(".graph") for n in saved} == full_block_stems(before)

    second = store(folder, state)  # its restore refills the index and revives the kept graphs
    after = second.index
    assert isinstance(after, FaissIndex)
    try:
        restored = after.stats()
        # Adopted, not rebuilt: no graph is pending, the blocks are the files' own, and no file changed.
        assert restored.count == stats.count and restored.blocks == stats.blocks
        assert restored.graphs_pending == 0
        assert full_block_stems(after) == {n.removesuffix(".graph") for n in saved}
        queries = np.random.default_rng(62).standard_normal((10, DIM)).astype(np.float32)
        assert [ids(after, q) for q in queries] == found
        second.start()
        assert second.wait_until_fresh(60)
        after.wait_for_graphs()
        assert graph_files(graphs) == saved
    finally:
        second.stop()
        after.close()


def test_a_damaged_graph_file_in_the_state_dir_is_reported_and_rebuilt(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    before, found = indexed(folder, state)
    graphs = state / "graphs"
    saved = graph_files(graphs)
    victim = sorted(saved)[1]
    with open(graphs / victim, "r+b") as file:  # zeroes in the middle of its graph
        file.seek(-200, os.SEEK_END)
        file.write(b"\0" * 64)
    with caplog.at_level(logging.WARNING, logger="ragflow.indexers.faiss"):
        second = store(folder, state)
    after = second.index
    assert isinstance(after, FaissIndex)
    try:
        assert any(victim in r.message and "damaged" in r.message for r in caplog.records)
        after.wait_for_graphs()
        stats = after.stats()
        assert stats.count == before.count() and stats.graphs_pending == 0
        # The other blocks' graphs were adopted; the damaged one was rebuilt and written again.
        now = graph_files(graphs)
        assert victim not in now and len(now) == len(saved)
        assert {n: t for n, t in now.items() if n in saved} == {n: t for n, t in saved.items() if n != victim}
        queries = np.random.default_rng(62).standard_normal((10, DIM)).astype(np.float32)
        overlap = [len(set(ids(after, q)) & set(f)) for q, f in zip(queries, found, strict=True)]
        assert sum(overlap) >= 90
    finally:
        second.stop()
        after.close()


def test_graphs_left_beside_an_emptied_state_are_deleted(folder: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    indexed(folder, state)
    assert graph_files(state / "graphs")
    os.unlink(state / "state.sqlite")  # the saved chunks are gone: the graphs describe nothing restored
    second = store(folder, state)
    try:
        assert second.index.count() == 0 and graph_files(state / "graphs") == {}
    finally:
        second.stop()


def test_a_graph_dir_given_or_keep_graphs_off_overrides_the_state_dir(folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    chosen = store(folder, tmp_path / "a", graph_dir=str(elsewhere))
    off = store(folder, tmp_path / "b", keep_graphs=False)
    exact = DocumentStore(
        FolderSource(folder, reconcile_interval=None),
        embedder=HashingEmbedder(DIM, max_tokens=40),
        state_dir=tmp_path / "c",
        index=FaissIndex(DIM, kind="flat"),
    )
    for s in (chosen, off, exact):
        s.stop()
    assert isinstance(chosen.index, FaissIndex) and chosen.index.graph_dir == str(elsewhere)
    assert isinstance(off.index, FaissIndex) and off.index.graph_dir is None
    assert isinstance(exact.index, FaissIndex) and exact.index.graph_dir is None
    assert not any((tmp_path / d / "graphs").exists() for d in "abc")


def test_a_configured_store_keeps_graphs_in_its_state_dir_unless_told_otherwise(
    folder: Path, tmp_path: Path
) -> None:
    from ragflow.config import parse_config

    def configured(index_options: str) -> FaissIndex:
        text = (
            f"sources:\n  - kind: folder\n    root: {folder}\n"
            f"persistence:\n  state_dir: state-{len(index_options)}\n"
            f"index:\n  kind: faiss\n{index_options}"
        )
        built = parse_config(text, base_dir=tmp_path).build_store(embedder=HashingEmbedder(DIM))
        built.stop()
        assert isinstance(built.index, FaissIndex)
        return built.index

    assert configured("").graph_dir == str(tmp_path / "state-0" / "graphs")
    assert configured("  graph_dir: mine\n").graph_dir == str(tmp_path / "mine")
    assert configured("  keep_graphs: false\n").graph_dir is None


def test_removing_the_root_generation_removes_its_graphs(tmp_path: Path) -> None:
    from ragflow.store.generations import remove_generation

    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "block-1.graph").write_bytes(b"x")
    (tmp_path / "embeddings.sqlite").write_bytes(b"cache")
    remove_generation(tmp_path, ".")
    assert not graphs.exists() and (tmp_path / "embeddings.sqlite").exists()
