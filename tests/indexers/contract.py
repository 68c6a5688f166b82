"""The ``VectorIndex`` contract as tests that any index runs unchanged: subclass :class:`VectorIndexContract`
in a ``test_*.py`` module, say how to make an index, and pytest runs every test below against it.

Only the protocol of :class:`ragflow.documents.VectorIndex` is used (``apply``, ``search``, ``count``,
``save``, ``load``), and filters are always :class:`ragflow.filters.MetadataFilter` objects, so that an
external index may translate them into its own query language. See docs/indexes.md.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from ragflow.documents import Hit, VectorIndex, VectorRecord
from ragflow.errors import IndexStoreError
from ragflow.filters import MetadataFilter, compile_filter

__all__ = ["VectorIndexContract", "brute_force", "records", "unit_vectors"]

Vectors = npt.NDArray[np.float32]
MakeIndex = Callable[[int], VectorIndex]


def unit_vectors(n: int, dim: int, seed: int) -> Vectors:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def records(vectors: Vectors, ids: list[int] | None = None, docs: int = 10) -> list[VectorRecord]:
    """One record per vector; chunk ``i`` belongs to document ``i % docs`` (metadata ``doc``, ``path``)."""
    ids = list(range(len(vectors))) if ids is None else ids
    return [
        VectorRecord(i, vectors[row], f"text {i}", {"doc": i % docs, "path": f"d{i % docs}/f.txt"})
        for row, i in enumerate(ids)
    ]


def brute_force(
    model: Mapping[int, Vectors], query: Vectors, k: int, allowed: set[int] | None = None
) -> list[int]:
    """The ids of the ``k`` vectors of ``model`` nearest ``query`` (unit vectors), ties by id."""
    ids = sorted(i for i in model if allowed is None or i in allowed)
    if not ids:
        return []
    scores = np.stack([model[i] for i in ids]) @ query
    order = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))
    return [ids[j] for j in order[:k]]


def matching(expression: str | None, glob: str | None = None) -> MetadataFilter:
    predicate = compile_filter(expression, glob)
    assert predicate is not None
    return predicate


def described(hits: Sequence[Hit]) -> list[tuple[int, str, dict[str, Any]]]:
    """What a hit says besides its distance, for comparing hits of two indexes."""
    return [(hit.id, hit.text, dict(hit.metadata)) for hit in hits]


class VectorIndexContract:
    """Tests of the :class:`~ragflow.documents.VectorIndex` contract; subclass and implement
    :meth:`make_index` (and :meth:`dispose` when an index holds resources)."""

    exact: ClassVar[bool] = True
    """Whether the index promises the exact top-k. For an approximate one the suite checks what it must
    still guarantee: k hits when k match, true distances in ascending order, a stored vector finding
    itself first, and every match when k covers them all."""

    def make_index(self, dim: int) -> VectorIndex:
        """A new, empty index of ``dim``-dimensional vectors."""
        raise NotImplementedError

    def dispose(self, index: VectorIndex) -> None:
        """Release what :meth:`make_index` acquired (threads, connections, tables); nothing by default."""

    @pytest.fixture
    def new_index(self) -> Iterator[MakeIndex]:
        made: list[VectorIndex] = []

        def make(dim: int) -> VectorIndex:
            made.append(self.make_index(dim))
            return made[-1]

        yield make
        for index in made:
            self.dispose(index)

    def assert_true_top_k(
        self, hits: Sequence[Hit], model: Mapping[int, Vectors], query: Vectors, k: int, allowed: set[int]
    ) -> None:
        """``hits`` are ``min(k, len(allowed))`` allowed chunks at their true cosine distance, ascending;
        the exact top-k of them when the index is exact."""
        ids = [hit.id for hit in hits]
        assert len(ids) == len(set(ids)) == min(k, len(allowed))
        assert set(ids) <= allowed
        true_dists = [1 - float(model[i] @ query) for i in ids]
        np.testing.assert_allclose([h.dist for h in hits], true_dists, atol=1e-5)
        assert all(a.dist <= b.dist + 1e-6 for a, b in itertools.pairwise(hits))
        if self.exact or k >= len(allowed):
            assert set(ids) == set(brute_force(model, query, k, allowed))

    # ------------------------------------------------------------------------------- empty, count

    def test_empty_index_and_nonpositive_k_return_nothing(self, new_index: MakeIndex) -> None:
        index = new_index(4)
        assert index.count() == 0
        assert index.search(unit_vectors(1, 4, 0)[0], 3) == []
        assert index.search(unit_vectors(1, 4, 0)[0], 3, matching("doc == `1`")) == []
        index.apply([], [])
        index.apply(records(unit_vectors(3, 4, 0)), [])
        assert index.search(unit_vectors(1, 4, 1)[0], 0) == []
        assert index.search(unit_vectors(1, 4, 1)[0], -1) == []

    def test_count_follows_upserts_and_deletes(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(50, 8, seed=40)
        index = new_index(8)
        index.apply(records(vectors[:30]), [])
        assert index.count() == 30
        index.apply(records(vectors[30:], ids=list(range(30, 50))), range(0, 30, 2))
        assert index.count() == 35
        index.apply([], range(50))
        assert index.count() == 0
        assert index.search(vectors[0], 10) == []

    # ------------------------------------------------------------------------------------- hits

    def test_hit_carries_text_metadata_and_cosine_distance_of_unnormalised_input(
        self, new_index: MakeIndex
    ) -> None:
        index = new_index(3)
        index.apply([VectorRecord(7, np.array([3.0, 0.0, 0.0], np.float32), "seven", {"path": "a.txt"})], [])
        (hit,) = index.search(np.array([1.0, 1.0, 0.0], np.float32), 5)
        assert (hit.id, hit.text, dict(hit.metadata)) == (7, "seven", {"path": "a.txt"})
        assert hit.dist == pytest.approx(1 - 1 / np.sqrt(2), abs=1e-6)

    def test_extra_is_merged_over_metadata_in_hits_but_not_filtered_on(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(2, 4, seed=41)
        document = {"path": "a.txt", "title": "A"}
        index = new_index(4)
        index.apply(
            [
                VectorRecord(1, vectors[0], "one", document, {"start": 0, "end": 3, "title": "chunk"}),
                VectorRecord(2, vectors[1], "two", document),
            ],
            [],
        )
        hits = {hit.id: dict(hit.metadata) for hit in index.search(vectors[0], 5)}
        assert hits == {1: {"path": "a.txt", "title": "chunk", "start": 0, "end": 3}, 2: document}
        assert index.search(vectors[0], 5, matching("start == `0`")) == []
        assert {h.id for h in index.search(vectors[0], 5, matching("title == 'A'"))} == {1, 2}

    def test_search_orders_by_cosine_distance_and_returns_all_when_k_exceeds_count(
        self, new_index: MakeIndex
    ) -> None:
        vectors = unit_vectors(300, 16, seed=42)
        index = new_index(16)
        index.apply(records(vectors), [])
        model = dict(enumerate(vectors))
        everything = set(model)
        for query in unit_vectors(5, 16, seed=43):
            for k in (1, 10, 300, 1000):
                self.assert_true_top_k(index.search(query, k), model, query, k, everything)
        for i in (0, 150, 299):
            first = index.search(vectors[i] * 5, 3)[0]
            assert first.id == i and first.dist == pytest.approx(0.0, abs=1e-5)

    # -------------------------------------------------------------------------- upserts, deletes

    def test_upsert_of_existing_id_replaces_it(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(2, 8, seed=5)
        index = new_index(8)
        index.apply([VectorRecord(1, vectors[0], "old", {"v": 1})], [])
        index.apply([VectorRecord(1, vectors[1], "new", {"v": 2})], [])
        assert index.count() == 1
        (hit,) = index.search(vectors[0], 10)
        assert (hit.text, dict(hit.metadata)) == ("new", {"v": 2})
        assert hit.dist == pytest.approx(1 - float(vectors[0] @ vectors[1]), abs=1e-6)

    def test_apply_semantics_for_repeated_ids(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(3, 8, seed=6)
        index = new_index(8)
        index.apply([VectorRecord(1, vectors[0], "a", {})], [])
        index.apply(
            [VectorRecord(1, vectors[1], "b", {}), VectorRecord(1, vectors[2], "c", {})],
            [1, 99],  # deletes go first; an unknown id is ignored
        )
        assert [(h.id, h.text) for h in index.search(vectors[2], 5)] == [(1, "c")]
        assert index.count() == 1

    def test_deleting_unknown_ids_is_harmless(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(20, 8, seed=44)
        index = new_index(8)
        index.apply([], [1, 2])  # on an empty index
        index.apply(records(vectors), [])
        before = described(index.search(vectors[0], 20))
        index.apply([], [20, 999, -5, 2**62])
        index.apply([], [3, 3])  # the second is unknown by then
        assert index.count() == 19
        assert described(index.search(vectors[0], 20)) == [h for h in before if h[0] != 3]

    def test_deleted_chunks_are_never_returned_and_k_live_results_remain(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(1000, 16, seed=45)
        index = new_index(16)
        index.apply(records(vectors), [])
        deleted = {i for i in range(1000) if i % 10}
        index.apply([], deleted)
        model = {i: vectors[i] for i in range(1000) if i not in deleted}
        assert index.count() == 100
        for query in unit_vectors(5, 16, seed=46):
            hits = index.search(query, 25)
            assert not deleted & {h.id for h in hits}
            self.assert_true_top_k(hits, model, query, 25, set(model))

    def test_a_failed_apply_applies_nothing(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(4, 4, seed=47)
        index = new_index(4)
        index.apply(records(vectors[:2]), [])
        before = described(index.search(vectors[0], 10))
        good = VectorRecord(3, vectors[3], "ok", {})
        bad = VectorRecord(4, np.ones(5, np.float32), "wrong dimension", {})
        with pytest.raises(IndexStoreError):
            index.apply([good, bad], [0])
        assert index.count() == 2
        assert described(index.search(vectors[0], 10)) == before

    # ------------------------------------------------------------------------------------ filters

    def test_filter_is_applied_inside_the_search_even_when_matches_are_rare(
        self, new_index: MakeIndex
    ) -> None:
        vectors = unit_vectors(2000, 16, seed=48)
        index = new_index(16)
        index.apply(records(vectors, docs=200), [])
        index.apply([], range(0, 2000, 7))
        model = {i: vectors[i] for i in range(2000) if i % 7}
        for expression, k in [
            ("doc < `100`", 10),  # half the documents
            ("doc == `17` || doc == `151`", 5),  # 1% of the chunks, more than k
            ("doc == `17`", 10),  # 10 chunks, one of them deleted: fewer than k exist
            ("doc == `-1`", 10),  # nothing matches
        ]:
            predicate = matching(expression)
            allowed = {i for i in model if predicate({"doc": i % 200})}
            for query in unit_vectors(3, 16, seed=49):
                self.assert_true_top_k(index.search(query, k, predicate), model, query, k, allowed)

    def test_glob_filter_inside_search(self, new_index: MakeIndex) -> None:
        vectors = unit_vectors(300, 8, seed=16)
        index = new_index(8)
        index.apply(
            [
                VectorRecord(i, vectors[i], "", {"path": f"dir{i % 3}/f{i}.{'pdf' if i % 2 else 'txt'}"})
                for i in range(300)
            ],
            [],
        )
        predicate = compile_filter(None, "dir1/*.pdf")
        hits = index.search(vectors[0], 300, predicate)
        assert {h.id for h in hits} == {i for i in range(300) if i % 3 == 1 and i % 2}

    # ---------------------------------------------------------------------------------- atomicity

    def test_readers_never_see_half_an_apply(self, new_index: MakeIndex) -> None:
        """A writer replaces whole documents (5 chunks, one version, ids that change with the version:
        deletes and upserts in one apply) or deletes those of the second half, while readers search
        everything: each document they see is whole and of one version, and none of the first half is
        ever missing."""
        dim, n_docs, chunks = 16, 24, 5
        index = new_index(dim)
        rng = np.random.default_rng(20)
        present = dict.fromkeys(range(n_docs), 0)

        def chunk_ids(doc: int, version: int) -> list[int]:
            return [doc * 100 + (version % 2) * 50 + c for c in range(chunks)]

        def document(doc: int, version: int) -> list[VectorRecord]:
            vectors = unit_vectors(chunks, dim, seed=1000 * version + doc)
            metadata = {"doc": doc}
            ids = chunk_ids(doc, version)
            return [VectorRecord(ids[c], vectors[c], f"{doc}:{version}", metadata) for c in range(chunks)]

        index.apply([r for doc in range(n_docs) for r in document(doc, 0)], [])
        stop = threading.Event()
        errors: list[str] = []
        searches = [0]

        def writer() -> None:
            version = 1
            while not stop.is_set():
                doc = int(rng.integers(n_docs))
                old = chunk_ids(doc, present[doc]) if doc in present else []
                if doc >= n_docs // 2 and rng.random() < 0.4:
                    index.apply([], old)
                    present.pop(doc, None)
                else:
                    # As the pipeline does, an id both retracted and upserted is only upserted.
                    replaced = [i for i in old if i not in chunk_ids(doc, version)]
                    index.apply(document(doc, version), replaced)
                    present[doc] = version
                version += 1

        def reader(seed: int) -> None:
            local = np.random.default_rng(seed)
            predicate = matching(f"doc < `{n_docs // 2}`")
            kept = set(range(n_docs // 2))
            while not stop.is_set():
                query = unit_vectors(1, dim, seed=int(local.integers(1 << 30)))[0]
                for hits in (index.search(query, 1000), index.search(query, 1000, predicate)):
                    versions: dict[int, set[str]] = {}
                    for hit in hits:
                        versions.setdefault(hit.id // 100, set()).add(hit.text)
                    for doc, texts in versions.items():
                        count = sum(1 for h in hits if h.id // 100 == doc)
                        if len(texts) != 1 or count != chunks:
                            errors.append(f"doc {doc}: {count} chunks, versions {sorted(texts)}")
                    if not kept <= versions.keys():
                        errors.append(f"docs {sorted(kept - versions.keys())} missing")
                searches[0] += 1

        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader, args=(s,)) for s in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors, errors[:5]
        assert searches[0] > 50
        final = {h.id // 100: h.text for h in index.search(unit_vectors(1, dim, seed=0)[0], 1000)}
        assert final == {doc: f"{doc}:{version}" for doc, version in present.items()}
        assert index.count() == chunks * len(present)

    # -------------------------------------------------------------------------------- save, load

    def test_save_load_round_trip(self, new_index: MakeIndex, tmp_path: Path) -> None:
        vectors = unit_vectors(600, 16, seed=50)
        index = new_index(16)
        index.apply(records(vectors), [])
        index.apply([VectorRecord(5, vectors[5], "five", {"doc": 5}, {"page": 2})], range(0, 600, 5))
        path = str(tmp_path / "index")
        index.save(path)
        index.save(path)  # over what was saved before
        loaded = new_index(16)
        loaded.apply(records(unit_vectors(3, 16, seed=51), ids=[5, 1000, 1001]), [])  # replaced by the load
        loaded.load(path)
        assert loaded.count() == index.count() == 481
        for query in unit_vectors(3, 16, seed=52):
            for predicate in (None, matching("doc == `3`")):
                before, after = index.search(query, 1000, predicate), loaded.search(query, 1000, predicate)
                assert described(after) == described(before)
                np.testing.assert_allclose([h.dist for h in after], [h.dist for h in before], atol=1e-6)
        (five,) = loaded.search(vectors[5], 1)
        assert (five.id, five.text, dict(five.metadata)) == (5, "five", {"doc": 5, "page": 2})
        # The loaded index keeps working: upserts replace, deletes remove.
        loaded.apply([VectorRecord(1, vectors[0], "replaced", {})], [2])
        assert loaded.count() == 480
        assert loaded.search(vectors[0], 1)[0].text == "replaced"
        assert index.count() == 481  # the saved index is its own

    def test_save_load_of_an_empty_index(self, new_index: MakeIndex, tmp_path: Path) -> None:
        path = str(tmp_path / "empty")
        new_index(8).save(path)
        loaded = new_index(8)
        loaded.apply(records(unit_vectors(3, 8, seed=53)), [])
        loaded.load(path)
        assert loaded.count() == 0
        assert loaded.search(unit_vectors(1, 8, seed=54)[0], 5) == []

    def test_loading_where_nothing_was_saved_raises_and_keeps_contents(
        self, new_index: MakeIndex, tmp_path: Path
    ) -> None:
        index = new_index(8)
        index.apply(records(unit_vectors(10, 8, seed=25)), [])
        with pytest.raises(IndexStoreError):
            index.load(str(tmp_path / "missing"))
        assert index.count() == 10
