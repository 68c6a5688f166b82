"""What the pgvector index adds to the contract: filters translated to SQL (checked against the filter
itself), filters it cannot translate still filling ``k``, documents replaced and positions advanced in
the apply's transaction, a stale position refused, and an apply killed mid-transaction leaving the
previous epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import numpy as np
import pytest

from ragflow.documents import VectorRecord
from ragflow.filters import compile_filter
from tests.indexers.contract import unit_vectors
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

import psycopg

from ragflow.indexers.pgvector import (
    DocumentEntry,
    PgvectorIndex,
    PositionAdvance,
    StalePositionError,
)
from ragflow.indexers.pgvector._filters import translate


@pytest.fixture
def index() -> Iterator[PgvectorIndex]:
    made = PgvectorIndex(dim=8, dsn=shared_postgres().dsn, table=PostgresServer.table_name("pg"))
    yield made
    made.drop()


def _metadata(i: int) -> dict[str, object]:
    kinds = ["pdf", "txt", "md"]
    base: dict[str, object] = {
        "doc": i % 50,
        "path": f"dir{i % 3}/sub{i % 2}/f{i}.{kinds[i % 3]}",
        "title": ["Alpha", "beta", "Gamma", "ünï"][i % 4],
        "tags": [["red"], ["red", "blue"], [], ["green"]][i % 4],
        "size": (i * 37) % 1000 / 10,
        "owner": {"team": ["a", "b"][i % 2]},
    }
    if i % 5 == 0:
        del base["title"]  # a missing field is null
    if i % 7 == 0:
        base["doc"] = str(i)  # a string where others hold numbers
    return base


EXPRESSIONS = [
    "doc == `17`",
    "doc != `17`",
    "doc < `10`",
    "doc >= `40` && size < `50.5`",
    "doc == `3` || doc == `4`",
    "!(doc < `25`)",
    "title == 'Alpha'",
    "title == null",
    "title != null",
    "title < 'beta'",
    "title >= 'Gamma'",
    "`10` > doc",
    "contains(tags, 'red')",
    "contains(title, 'amm')",
    "!contains(tags, 'red')",
    "globmatch('dir1/**/*.pdf', path)",
    "globmatch('*.md', path) && owner.team == 'a'",
    "owner.team == 'b'",
    "doc == title",
    "length(tags) > `1`",  # not translated: TRUE, checked by the filter itself
    "doc < title",
    "contains(path, `dir2`)",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_sql_translation_accepts_every_row_the_filter_accepts_and_exactly_them_when_exact(
    index: PgvectorIndex, expression: str
) -> None:
    vectors = unit_vectors(300, 8, seed=3)
    index.apply([VectorRecord(i, vectors[i], "", _metadata(i)) for i in range(300)], [])
    for glob in (None, "sub1/*.txt"):
        predicate = compile_filter(expression, glob)
        assert predicate is not None
        where = translate(predicate)
        with psycopg.connect(index.dsn) as conn:
            selected = {
                row[0]
                for row in conn.execute(
                    f"SELECT id FROM {index.tables.chunks} WHERE {where.sql}", where.params
                ).fetchall()
            }
        accepted = {i for i in range(300) if predicate(_metadata(i))}
        assert accepted <= selected
        if where.exact:
            assert selected == accepted
    assert not translate(compile_filter("length(tags) > `1`", None)).exact
    assert translate(compile_filter("doc == `1` && contains(tags, 'red')", "*.pdf")).exact


def test_a_filter_that_sql_cannot_express_still_fills_k(index: PgvectorIndex) -> None:
    vectors = unit_vectors(2000, 8, seed=4)
    index.apply(
        [VectorRecord(i, vectors[i], "", {"tags": ["x"] * (1 + (i % 100 == 7))}) for i in range(2000)], []
    )
    predicate = compile_filter("length(tags) > `1`", None)  # 20 chunks of 2000
    for query in unit_vectors(3, 8, seed=5):
        hits = index.search(query, 10, predicate)
        assert len(hits) == 10 and all(h.id % 100 == 7 for h in hits)
        assert [h.dist for h in hits] == sorted(h.dist for h in hits)
        everything = index.search(query, 50, predicate)
        assert {h.id for h in everything} == {i for i in range(2000) if i % 100 == 7}


def test_commit_replaces_documents_and_advances_positions_in_one_transaction(index: PgvectorIndex) -> None:
    vectors = unit_vectors(6, 8, seed=6)
    meta = {"doc_id": "a"}
    index.commit(
        [VectorRecord(i, vectors[i], f"a{i}", meta) for i in range(3)],
        documents={"a": DocumentEntry("a", meta, 3)},
        positions=[PositionAdvance("g", "t", 0, None, 5)],
    )
    # a new version with one chunk kept (id 0) and two gone: no delete is named, the document is
    index.commit(
        [VectorRecord(0, vectors[3], "a0'", meta)],
        documents={"a": DocumentEntry("a", meta, 1)},
        positions=[PositionAdvance("g", "t", 0, 5, 9)],
    )
    assert index.count() == 1 and index.search(vectors[3], 5)[0].text == "a0'"
    assert index.positions("g", ["t"]) == {("t", 0): 9}
    assert [row["chunks"] for row in index.document_rows()] == [1]
    index.commit([], documents={"a": None}, positions=[PositionAdvance("g", "t", 0, 9, 10)])
    assert index.count() == 0 and index.document_rows() == []


def test_a_stale_position_applies_nothing(index: PgvectorIndex) -> None:
    vectors = unit_vectors(2, 8, seed=7)
    index.commit([VectorRecord(1, vectors[0], "one", {})], positions=[PositionAdvance("g", "t", 2, None, 4)])
    for expected in (None, 3):  # inserted by someone else; moved on by someone else
        with pytest.raises(StalePositionError):
            index.commit(
                [VectorRecord(2, vectors[1], "two", {})],
                [1],
                positions=[PositionAdvance("g", "t", 2, expected, 8)],
            )
    assert index.count() == 1 and index.positions("g", ["t"]) == {("t", 2): 4}


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from ragflow.documents import VectorRecord
    from ragflow.indexers.pgvector import PgvectorIndex, PositionAdvance
    index = PgvectorIndex(dim=64, dsn=sys.argv[1], table=sys.argv[2])
    rng = np.random.default_rng(1)
    records = [VectorRecord(i, rng.standard_normal(64).astype(np.float32), "x" * 200, {"doc_id": str(i)})
               for i in range(1000, 200000)]
    index.commit(records, range(1000), positions=[PositionAdvance("g", "t", 0, 10, 20)])
    """
)


def test_an_apply_killed_mid_transaction_leaves_the_previous_epoch(index: PgvectorIndex) -> None:
    table = PostgresServer.table_name("killed")
    first = PgvectorIndex(dim=64, dsn=index.dsn, table=table)
    try:
        vectors = unit_vectors(1000, 64, seed=8)
        first.commit(
            [VectorRecord(i, vectors[i], "old", {"doc_id": str(i)}) for i in range(1000)],
            positions=[PositionAdvance("g", "t", 0, None, 10)],
        )
        child = subprocess.Popen([sys.executable, "-c", _CHILD, index.dsn, table])
        try:
            with psycopg.connect(index.dsn, autocommit=True) as watcher:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # until the child's transaction has written
                    (writing,) = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                        "AND pid <> pg_backend_pid() AND query LIKE %s",
                        (f'%"{table}"%',),
                    ).fetchone() or (0,)
                    if writing:
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail("the child never started writing")
                time.sleep(0.5)  # well inside its 199,000 rows
                assert child.poll() is None, "the child finished before it was killed"
                os.kill(child.pid, signal.SIGKILL)
                child.wait(10)
                # the server notices the lost client and rolls its transaction back
                while (
                    watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                        "AND pid <> pg_backend_pid() AND query LIKE %s",
                        (f'%"{table}"%',),
                    ).fetchone()
                    or (0,)
                )[0]:
                    time.sleep(0.05)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(10)
        assert first.count() == 1000
        assert {h.text for h in first.search(vectors[0], 50)} == {"old"}
        assert first.positions("g", ["t"]) == {("t", 0): 10}
        assert np.isclose(first.search(vectors[5], 1)[0].dist, 0.0, atol=1e-5)
    finally:
        first.drop()
