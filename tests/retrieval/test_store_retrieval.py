"""Retrieval modes through a real ``DocumentStore`` (folder source, hashing embedder, faiss index)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ragflow.connectors.folder import FolderSource
from ragflow.documents import Hit
from ragflow.errors import ConfigError
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder

DOCS = {
    "guide/backup.md": "To copy a database into one file, run pg_dump with the custom format.",
    "guide/vacuum.md": "Autovacuum reclaims the space of dead rows and updates planner statistics.",
    "api/paths.md": "Call os.path.join to build a path; getFileName returns its last part.",
    "notes/backup.md": "Notes on pg_dump: the custom format can be restored selectively.",
}


def write_docs(root: Path) -> Path:
    for name, text in DOCS.items():
        path = root / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "docs"


@pytest.fixture
def store(tmp_path: Path) -> DocumentStore:
    built = DocumentStore(
        FolderSource(write_docs(tmp_path)), embedder=HashingEmbedder(), state_dir=tmp_path / "s"
    )
    built.run_static()
    return built


def paths(hits: list[Hit]) -> list[str]:
    return [h.metadata["path"].split("/docs/")[-1] for h in hits]


def test_every_mode_finds_an_exact_identifier(store: DocumentStore) -> None:
    for mode in ("vector", "lexical", "hybrid"):
        assert paths(store.retrieve("os.path.join", 1, search_mode=mode)) == ["api/paths.md"], mode
    assert paths(store.retrieve("getFileName", 1)) == ["api/paths.md"]  # the default mode: hybrid


def test_filters_apply_inside_every_mode(store: DocumentStore) -> None:
    for mode in ("vector", "lexical", "hybrid"):
        hits = store.retrieve("pg_dump custom format", 2, filepath_globpattern="notes/**", search_mode=mode)
        assert paths(hits) == ["notes/backup.md"], mode
        hits = store.retrieve("pg_dump", 3, metadata_filter="contains(path, `guide`)", search_mode=mode)
        assert set(paths(hits)) <= {"guide/backup.md", "guide/vacuum.md"} and hits, mode


def test_a_restart_tokenises_nothing_that_did_not_change(tmp_path: Path, tokenised: list[str]) -> None:
    docs = write_docs(tmp_path)
    DocumentStore(FolderSource(docs), embedder=HashingEmbedder(), state_dir=tmp_path / "s").run_static()
    (docs / "guide/vacuum.md").write_text("VACUUM FULL rewrites the whole table.")
    tokenised.clear()
    again = DocumentStore(FolderSource(docs), embedder=HashingEmbedder(), state_dir=tmp_path / "s")
    again.run_static()
    assert tokenised == ["VACUUM FULL rewrites the whole table."]  # the edit, applied by its epoch
    assert paths(again.retrieve("rewrites", 1, search_mode="lexical")) == ["guide/vacuum.md"]
    assert again.retrieve("autovacuum", 1, search_mode="lexical") == []
    assert again.indexes.lexical is not None and again.indexes.lexical.count() == again.index.count()


def test_rerank_without_a_model_is_a_clear_error(store: DocumentStore) -> None:
    with pytest.raises(ConfigError, match="no cross-encoder is configured"):
        store.retrieve("backup", 2, rerank=True)


def test_a_store_without_the_lexical_index_serves_vector_only(tmp_path: Path) -> None:
    plain = DocumentStore(FolderSource(write_docs(tmp_path)), embedder=HashingEmbedder(), lexical=False)
    plain.run_static()
    assert paths(plain.retrieve("os.path.join", 1)) == ["api/paths.md"]
    with pytest.raises(ConfigError, match="lexical index"):
        plain.retrieve("backup", 1, search_mode="hybrid")


def test_diversity_and_context_are_deterministic(store: DocumentStore) -> None:
    runs = {tuple(h.id for h in store.retrieve("pg_dump format", 3, diversity=0.6)) for _ in range(3)}
    assert len(runs) == 1
    [hit] = store.retrieve("autovacuum", 1, context_window=2)
    assert hit.metadata["context_chunks"] == 1 and hit.text == DOCS["guide/vacuum.md"]


def lexical_contents(store: DocumentStore) -> dict[int, str]:
    assert store.indexes.lexical is not None
    return {h.id: h.text for h in store.indexes.lexical.search(" ".join(WORDS), 1000)}


def vector_contents(store: DocumentStore) -> dict[int, str]:
    hits = store.index.search(np.zeros(store.embedder.dim, np.float32), store.index.count())
    return {h.id: h.text for h in hits}


WORDS = "lantern harbor falcon canyon meadow river orbit comet quarry marble".split()


@pytest.mark.parametrize("seed", range(3))
def test_both_indexes_hold_the_same_chunks_after_random_edits_and_a_restart(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    docs = tmp_path / "docs"
    docs.mkdir()

    def step() -> None:
        path = docs / f"{rng.randrange(6)}.md"
        if path.exists() and rng.random() < 0.3:
            path.unlink()
        else:
            paragraphs = [
                " ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(rng.randint(1, 4))
            ]
            path.write_text("\n\n".join(paragraphs))

    for _ in range(4):
        step()
    with DocumentStore(FolderSource(docs), embedder=HashingEmbedder(), state_dir=tmp_path / "s") as store:
        for _ in range(8):
            step()
            assert store.wait_until_fresh(30)
        assert eventually(lambda: lexical_contents(store) == vector_contents(store))
    again = DocumentStore(FolderSource(docs), embedder=HashingEmbedder(), state_dir=tmp_path / "s")
    again.run_static()
    scratch = DocumentStore(FolderSource(docs), embedder=HashingEmbedder())
    scratch.run_static()
    assert (
        lexical_contents(again)
        == vector_contents(again)
        == vector_contents(scratch)
        == lexical_contents(scratch)
    )


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
