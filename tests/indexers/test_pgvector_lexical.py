"""The lexical side of the pgvector index, against the real PostgreSQL the suite starts: BM25 over the
words written in each chunk's row, equal to the embedded ``LexicalIndex`` (same tokens, same scores,
same order) while the statistics are exact; with PostgreSQL's planner statistics, the pruned search
(MaxScore) equal to scoring every matching chunk; filters inside it; fusion through ``SearchIndexes``;
an epoch's words visible together with its vectors; a table of the earlier schema given its words."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from ragflow.documents import Hit, VectorRecord
from ragflow.filters import compile_filter
from ragflow.retrieval import LexicalIndex, Retriever, SearchIndexes
from ragflow.retrieval.fusion import reciprocal_rank_fusion
from tests.indexers.contract import unit_vectors
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

import psycopg

from ragflow.indexers.pgvector import PgvectorIndex
from ragflow.indexers.pgvector import _index as index_module
from ragflow.indexers.pgvector._lexical import (
    Probe,
    QueryPlan,
    frequency_sql,
    lexemes,
    query_terms,
    score_parameters,
    score_sql,
)
from ragflow.indexers.pgvector._lexical import tsquery as any_of

DIM = 16
WORDS = [f"w{n}" for n in range(60)] + ["vacuum", "os.path.join", "max_wal_senders", "getFileName", "it's"]
QUERIES = [
    "w1 w2",
    "vacuum",
    "how does vacuum work with w3 and w40",
    "path join",
    "os.path.join",
    "max_wal_senders w7",
    "get file name",
    "it's w59 w58 w57 w56 w55 w54 w53 w52",
    "nothing-here-at-all",
    "",
]


def _texts(n: int, seed: int) -> list[str]:
    """Texts with a skewed word distribution (a few words in most chunks, most in few), of varied length."""
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(WORDS))]
    return [" ".join(rng.choices(WORDS, weights, k=rng.randint(3, 40))) for _ in range(n)]


def _records(texts: list[str], seed: int = 0, first_id: int = 0) -> list[VectorRecord]:
    vectors = unit_vectors(len(texts), DIM, seed)
    return [
        VectorRecord(first_id + i, vectors[i], text, {"doc": i % 7, "path": f"dir{i % 3}/f{i}.md"})
        for i, text in enumerate(texts)
    ]


@pytest.fixture
def index() -> Iterator[PgvectorIndex]:
    made = PgvectorIndex(dim=DIM, dsn=shared_postgres().dsn, table=PostgresServer.table_name("lex"))
    yield made
    made.drop()


def _same(got: list[Hit], want: list[Hit]) -> None:
    """The same chunks in the same order with the same scores (to float32 precision); chunks of equal
    scores may differ in float rounding, so the order is compared within a tolerance."""
    assert [round(h.dist, 5) for h in got] == pytest.approx([round(h.dist, 5) for h in want], abs=2e-5)
    assert {h.id for h in got} == {h.id for h in want} or _ties_only(got, want)
    for mine, theirs in zip(got, want, strict=True):
        if abs(mine.dist - theirs.dist) < 1e-6:
            continue
        assert mine.id == theirs.id


def _ties_only(got: list[Hit], want: list[Hit]) -> bool:
    """Whether the sets differ only among chunks scoring the last (tied) score."""
    last = want[-1].dist if want else 0.0
    return {h.id for h in got if h.dist < last - 1e-6} == {h.id for h in want if h.dist < last - 1e-6}


def test_tokens_are_the_embedded_index_tokens_with_positions() -> None:
    literal, words = lexemes("Call os.path.join on each getFileName; os.path.join again")
    assert words == 13  # "on", "each", "again": stop words
    assert literal == (
        "'call':1 'os.path.join':2,10 'os':3,11 'path':4,12 'join':5,13 "
        "'getfilename':6 'get':7 'file':8 'name':9"
    )
    assert any_of(query_terms("it's a back\\slash")) == "'s' | 'back' | 'slash'"
    with psycopg.connect(shared_postgres().dsn, autocommit=True) as conn:
        for text in ["it's a 'quoted' back\\slash ü日本語", "x" * 3000 + " short", "w " * 20_000, ""]:
            literal, _ = lexemes(text)
            conn.execute("SELECT %s::tsvector", (literal,))  # PostgreSQL accepts every literal


def test_a_words_frequency_is_read_exactly_for_every_count_postgresql_keeps() -> None:
    texts = [" ".join(["w", "other"] * n) or "other" for n in range(257)] + ["w " * 1000]
    with psycopg.connect(shared_postgres().dsn, autocommit=True) as conn:
        for text in texts:
            literal, _ = lexemes(text)
            row = conn.execute(
                f"SELECT {frequency_sql()}, ts_rank_cd(lexemes, 'w', 0) "
                "FROM (SELECT %s::tsvector AS lexemes) AS t",
                ("'w'", literal),
            ).fetchone()
            assert row is not None
            kept = min(text.split().count("w"), 256)  # PostgreSQL keeps 256 positions per word
            assert (row[0], round(10 * row[1])) == (kept, kept), text[:40]


def test_lexical_hits_equal_the_embedded_bm25_index(index: PgvectorIndex) -> None:
    records = _records(_texts(400, 1))
    index.apply(records, [])
    embedded = LexicalIndex()
    embedded.apply(records, [])
    for query in QUERIES:
        for k in (1, 5, 30):
            _same(index.lexical_search(query, k), embedded.search(query, k))
    # edits and deletes change the statistics too
    changed = _records(_texts(50, 2), seed=3, first_id=390)
    index.apply(changed, range(0, 100))
    embedded.apply(changed, range(0, 100))
    for query in QUERIES:
        _same(index.lexical_search(query, 10), embedded.search(query, 10))
    hit = index.lexical_search("os.path.join", 1)[0]
    assert "os.path.join" in hit.text and hit.metadata["path"].startswith("dir")


def _compiled(metadata_filter: str | None, glob: str | None) -> Callable[..., bool]:
    made = compile_filter(metadata_filter, glob)
    assert made is not None
    return made


def test_filters_apply_inside_the_lexical_search(index: PgvectorIndex) -> None:
    records = _records(_texts(300, 4))
    index.apply(records, [])
    embedded = LexicalIndex()
    embedded.apply(records, [])
    filters: list[Callable[..., bool]] = [
        _compiled("doc == `3`", None),  # translated to SQL
        _compiled(None, "dir1/**"),
        _compiled("doc == `3` || doc == `5`", "dir2/*"),
        lambda metadata: metadata["doc"] in (1, 6),  # not translatable: checked on growing candidates
        _compiled("doc == `99`", None),  # matches nothing
    ]
    for predicate in filters:
        for query in QUERIES[:8]:
            got = index.lexical_search(query, 10, predicate)
            assert all(predicate(h.metadata) for h in got)
            _same(got, embedded.search(query, 10, predicate))


def test_with_planner_statistics_the_pruned_search_equals_scoring_every_match(
    index: PgvectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records(_texts(3000, 5))
    index.apply(records, [])
    with psycopg.connect(index.dsn, autocommit=True) as conn:
        conn.execute(f"ANALYZE {index.tables.chunks}")
    monkeypatch.setattr(index_module, "EXACT_BELOW", 100)
    monkeypatch.setattr("ragflow.indexers.pgvector._lexical.FIRST_PASS_MIN_ROWS", 10)
    statistics = index._planner_statistics(_connection(index))
    assert not statistics.exact and statistics.common and statistics.chunks == pytest.approx(3000, rel=0.05)
    assert statistics.average_words == pytest.approx(np.mean([lexemes(r.text)[1] for r in records]), rel=0.1)
    index._statistics_cache = (float("inf"), statistics)
    embedded = LexicalIndex()
    embedded.apply(records, [])
    passes: list[str | None] = []
    second_pass = QueryPlan.second_pass

    def recorded(plan: QueryPlan, theta: float, probe: Probe) -> str | None:
        passes.append(second_pass(plan, theta, probe))
        return passes[-1]

    monkeypatch.setattr(QueryPlan, "second_pass", recorded)
    for query in QUERIES:
        for k in (1, 10, 30):
            got = index.lexical_search(query, k)
            want = _score_every_match(index, query, k)
            assert [(h.id, round(h.dist, 6)) for h in got] == [(h.id, round(h.dist, 6)) for h in want]
        # estimated statistics rank close to the embedded index's exact ones
        top = {h.id for h in index.lexical_search(query, 10)}
        exact = {h.id for h in embedded.search(query, 10)}
        assert len(top & exact) >= 0.6 * len(exact)
    # both happened: a second pass over the sets of words that could still win, and none needed
    assert any(p is not None and "&" in p.split("!")[0] for p in passes) and None in passes


def _connection(index: PgvectorIndex) -> psycopg.Connection:
    conn = psycopg.connect(index.dsn, autocommit=True)
    return conn


def _score_every_match(index: PgvectorIndex, query: str, k: int) -> list[Hit]:
    """BM25 of every chunk holding any word of ``query``: no pruning."""
    statistics = index._statistics_cache[1]
    assert statistics is not None
    terms = query_terms(query)
    with _connection(index) as conn:
        plan = index._query_plan(conn, terms, statistics)
        if not plan.terms:
            return []
        sql = score_sql(len(plan.terms), index.tables.chunks, "TRUE")  # every chunk with any of the words
        params = score_parameters(plan, statistics.average_words, any_of(plan.terms), (), k)
        rows = conn.execute(sql, params).fetchall()
    return [Hit(i, t, {**m, **e}, 1 / (1 + s)) for i, t, m, e, s in rows]


def test_hybrid_through_search_indexes_fuses_both_sides_of_one_snapshot(index: PgvectorIndex) -> None:
    records = _records(_texts(80, 6))
    indexes = SearchIndexes(index, LexicalIndex())  # the index's own words replace the LexicalIndex
    indexes.apply(records, [])
    assert indexes.lexical is not None and indexes.lexical.count() == 80
    vectors = {r.text: r.vector for r in records}
    retriever = Retriever(
        indexes,
        lambda q: vectors.get(q, records[0].vector),
        lambda t: np.zeros((len(t), DIM), np.float32),
        lambda d: (),
    )
    embedded = SearchIndexes(_ExactVectors(records), LexicalIndex())
    embedded.apply(records, [])
    for query in [*QUERIES[:8], records[5].text]:
        vector = vectors.get(query, records[0].vector)
        by_vector, by_words = indexes.search_both(vector, query, 30)
        assert by_vector == index.search(vector, 30) and by_words == index.lexical_search(query, 30)
        _same(by_words, embedded.lexical.search(query, 30))  # type: ignore[union-attr]
        fused = reciprocal_rank_fusion([by_vector, by_words], [1.0, 1.0], 60, limit=10)
        got = retriever.retrieve(query, 10, None)
        assert [h.id for h in got] == [h.id for h in fused]
        assert [h.id for h in retriever.retrieve(query, 5, None, search_mode="lexical")] == [
            h.id for h in by_words[:5]
        ]
        predicate = compile_filter("doc == `2`", None)
        assert all(h.metadata["doc"] == 2 for h in retriever.retrieve(query, 10, predicate))


class _ExactVectors:
    """A brute-force vector index (the reference the HNSW index must equal on a small table)."""

    def __init__(self, records: list[VectorRecord]) -> None:
        self.records = records

    def apply(self, upserts: object, deletes: object) -> None:
        pass

    def search(self, vector: np.ndarray, k: int, filter: Callable[..., bool] | None = None) -> list[Hit]:
        scored = [
            Hit(r.id, r.text, dict(r.metadata), float(1 - np.dot(vector, r.vector))) for r in self.records
        ]
        return sorted(scored, key=lambda h: (h.dist, h.id))[:k]

    def count(self) -> int:
        return len(self.records)

    def save(self, path: str) -> None:
        pass

    def load(self, path: str) -> None:
        pass


def test_an_epochs_words_are_visible_with_its_vectors_never_apart(index: PgvectorIndex) -> None:
    """A writer swaps whole generations (every chunk's text and vector) while readers search: each
    hybrid answer holds one generation on both sides, and so does every lexical answer (its
    statements read one snapshot)."""
    ids = list(range(60))
    vectors = unit_vectors(2, DIM, 7)

    def generation(g: int) -> list[VectorRecord]:
        return [
            VectorRecord(i, vectors[g % 2], f"gen{g} common word{i % 5} common", {"generation": g})
            for i in ids
        ]

    index.apply(generation(0), [])
    stop = threading.Event()
    failures: list[str] = []
    swaps = 0

    def write() -> None:
        nonlocal swaps
        g = 1
        while not stop.is_set():
            index.apply(generation(g), [])
            swaps, g = swaps + 1, g + 1

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    try:
        while reads < 150 or swaps < 20:
            by_vector, by_words = index.hybrid_search(vectors[reads % 2], "common word3", 20)
            seen = {h.metadata["generation"] for h in by_vector + by_words}
            lexical = {h.metadata["generation"] for h in index.lexical_search("common word1 word2", 20)}
            if len(seen) != 1 or len(lexical) != 1 or not by_words:
                failures.append(f"read {reads}: hybrid {seen}, lexical {lexical}")
            reads += 1
    finally:
        stop.set()
        writer.join()
    assert not failures, failures[:5]


def test_a_table_of_the_earlier_schema_gets_its_words_when_opened() -> None:
    dsn, table = shared_postgres().dsn, PostgresServer.table_name("old")
    records = _records(_texts(50, 8))
    index = PgvectorIndex(dim=DIM, dsn=dsn, table=table)
    try:
        index.apply(records, [])
        with psycopg.connect(dsn, autocommit=True) as conn:  # back to the schema before the lexical side
            conn.execute(f'DROP INDEX "{table}_lexemes"')
            conn.execute(f'ALTER TABLE "{table}" DROP COLUMN lexemes, DROP COLUMN words')
        index.close()
        reopened = PgvectorIndex(dim=DIM, dsn=dsn, table=table)
        embedded = LexicalIndex()
        embedded.apply(records, [])
        for query in QUERIES:
            _same(reopened.lexical_search(query, 10), embedded.search(query, 10))
        with psycopg.connect(dsn, autocommit=True) as conn:
            storage = conn.execute(
                "SELECT array_agg(attstorage ORDER BY attname) FROM pg_attribute "
                "WHERE attrelid = %s::regclass "
                "AND attname IN ('embedding', 'lexemes')",
                (f'"{table}"',),
            ).fetchone()
            inline = conn.execute(
                f'SELECT count(pg_column_toast_chunk_id(embedding)), count(*) FROM "{table}"'
            ).fetchone()
        assert storage == (["m", "m"],) and inline == (0, len(records))  # every row rewritten, vectors inline
    finally:
        PgvectorIndex(dim=DIM, dsn=dsn, table=table).drop()
