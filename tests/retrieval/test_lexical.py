from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragflow.documents import VectorRecord
from ragflow.errors import IndexStoreError
from ragflow.filters import compile_filter
from ragflow.indexers.faiss import FaissIndex
from ragflow.retrieval.indexes import SearchIndexes
from ragflow.retrieval.lexical import LexicalIndex

WORDS = "vacuum backup restore replica index join wal checkpoint trigger role".split()
DIM = 8


def record(chunk_id: int, text: str, doc: str = "a") -> VectorRecord:
    vector = np.random.default_rng(chunk_id).standard_normal(DIM).astype(np.float32)
    return VectorRecord(
        chunk_id, vector / np.linalg.norm(vector), text, {"path": f"{doc}.md"}, {"n": chunk_id}
    )


def test_bm25_ranks_the_chunk_with_more_and_rarer_terms_first() -> None:
    index = LexicalIndex()
    index.apply(
        [record(1, "vacuum the table"), record(2, "vacuum vacuum and analyze"), record(3, "a backup")], []
    )
    assert [h.id for h in index.search("vacuum", 3)] == [2, 1]
    hits = index.search("backup vacuum", 3)
    assert hits[0].id == 3 and hits[0].metadata == {"path": "a.md", "n": 3}
    assert [h.dist for h in hits] == sorted(h.dist for h in hits)


def test_a_code_identifier_is_found_by_its_parts_and_ranks_first_whole() -> None:
    index = LexicalIndex()
    index.apply([record(1, "call os.path.join here"), record(2, "the path to join and the os")], [])
    assert [h.id for h in index.search("os.path.join", 2)] == [1, 2]
    assert {h.id for h in index.search("join", 2)} == {1, 2}
    assert index.search("the and", 2) == []  # stop words only


def test_the_filter_applies_inside_the_search_so_rare_matches_fill_k() -> None:
    index = LexicalIndex()
    common = [record(i, "vacuum " * 5, "common") for i in range(200)]
    rare = [record(1000 + i, "vacuum once", "rare") for i in range(3)]
    index.apply(common + rare, [])
    hits = index.search("vacuum", 3, compile_filter(None, "rare.md"))
    assert sorted(h.id for h in hits) == [1000, 1001, 1002]


def test_an_apply_that_fails_on_the_vector_side_changes_neither_index() -> None:
    indexes = SearchIndexes(FaissIndex(DIM, kind="flat"), LexicalIndex())
    indexes.apply([record(1, "vacuum")], [])
    wrong = VectorRecord(2, np.ones(DIM + 1, np.float32), "backup", {}, {})
    with pytest.raises(IndexStoreError):
        indexes.apply([wrong], [1])
    assert indexes.count() == 1 and indexes.lexical is not None and indexes.lexical.ids() == {1}
    assert indexes.lexical.search("backup", 1) == []


def test_a_restart_tokenises_only_the_chunks_that_changed(tmp_path: Path, tokenised: list[str]) -> None:
    first = LexicalIndex(tmp_path / "lexical.sqlite")
    first.apply([record(i, f"{WORDS[i]} text") for i in range(5)], [])
    first.close()
    tokenised.clear()
    again = LexicalIndex(tmp_path / "lexical.sqlite")
    # the checkpoint: chunk 0 edited, chunk 4 gone, chunk 9 new
    checkpoint = [record(0, "trigger edited")] + [record(i, f"{WORDS[i]} text") for i in (1, 2, 3)]
    assert again.restore([*checkpoint, record(9, "role new")]) == 2
    assert sorted(tokenised) == ["role new", "trigger edited"]
    assert again.ids() == {0, 1, 2, 3, 9}
    assert [h.id for h in again.search("trigger", 5)] == [0] and again.search("join", 5) == []


# -- equal to a from-scratch build under random epochs, across restarts ------------------------------

epochs = st.lists(
    st.tuples(
        st.dictionaries(
            st.integers(0, 15), st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), max_size=5
        ),
        st.sets(st.integers(0, 15), max_size=4),
        st.booleans(),  # restart after this epoch
    ),
    min_size=1,
    max_size=8,
)


def contents(indexes: SearchIndexes) -> tuple[dict[int, str], dict[int, str]]:
    assert indexes.lexical is not None
    everything = indexes.vector.search(np.zeros(DIM, np.float32), 100)
    lexical = {h.id: h.text for w in WORDS for h in indexes.lexical.search(w, 100)}
    return {h.id: h.text for h in everything}, lexical


@settings(max_examples=25, deadline=None)
@given(epochs)
def test_both_indexes_equal_a_from_scratch_build_after_random_epochs(
    tmp_path_factory: pytest.TempPathFactory, history: list[tuple[dict[int, list[str]], set[int], bool]]
) -> None:
    check_against_scratch(tmp_path_factory, history)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(epochs)
def test_both_indexes_equal_a_from_scratch_build_after_many_random_epochs(
    tmp_path_factory: pytest.TempPathFactory, history: list[tuple[dict[int, list[str]], set[int], bool]]
) -> None:
    check_against_scratch(tmp_path_factory, history)


def check_against_scratch(
    tmp_path_factory: pytest.TempPathFactory, history: list[tuple[dict[int, list[str]], set[int], bool]]
) -> None:
    path = tmp_path_factory.mktemp("lexical") / "lexical.sqlite"
    indexes = SearchIndexes(FaissIndex(DIM, kind="flat"), LexicalIndex(path))
    expected: dict[int, str] = {}
    for upserts, deletes, restart in history:
        indexes.apply([record(i, " ".join(words)) for i, words in upserts.items()], deletes)
        for i in deletes:
            expected.pop(i, None)
        expected.update({i: " ".join(words) for i, words in upserts.items()})
        if restart:  # what a store does: a new vector index, the lexical file reconciled with the state
            assert indexes.lexical is not None
            indexes.lexical.close()
            indexes = SearchIndexes(FaissIndex(DIM, kind="flat"), LexicalIndex(path))
            indexes.restore([record(i, text) for i, text in expected.items()], batch=3)
        vector, lexical = contents(indexes)
        assert vector == expected and lexical == expected
        scratch = LexicalIndex()
        scratch.apply([record(i, t) for i, t in expected.items()], [])
        for word in WORDS:  # the same ranking, scores included, as a fresh build's
            assert indexes.lexical is not None
            assert indexes.lexical.search(word, 20) == scratch.search(word, 20)


def test_a_hybrid_reader_never_sees_a_chunk_in_one_index_and_not_the_other() -> None:
    """A writer swaps whole generations of chunks (ids 0-9 <-> 10-19) while readers search both indexes
    through ``consistent``: every read sees one generation in both."""
    indexes = SearchIndexes(FaissIndex(DIM, kind="flat"), LexicalIndex())
    lexical = indexes.lexical
    assert lexical is not None
    generations = [
        [record(i, "vacuum backup") for i in range(10)],
        [record(i, "vacuum backup") for i in range(10, 20)],
    ]
    indexes.apply(generations[0], [])
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            indexes.apply(generations[n % 2], [r.id for r in generations[(n + 1) % 2]])

    def both() -> tuple[set[int], set[int]]:
        vector = {h.id for h in indexes.vector.search(np.ones(DIM, np.float32), 50)}
        return vector, {h.id for h in lexical.search("vacuum", 50)}

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(200):
            vector, words = indexes.consistent(both)
            assert vector == words and vector in ({*range(10)}, {*range(10, 20)})
    finally:
        stop.set()
        writer.join()
