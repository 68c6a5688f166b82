"""A query replica answers ``/v1/retrieve`` as the embedded default does, from PostgreSQL alone: the same
folder indexed once by an embedded store (faiss and the in-memory BM25 index) and once into a pgvector
table, then both served over REST; every search mode, with and without filters, returns the same hits in
the same order with the same distances. The replica's lexical side is PostgreSQL full-text search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app
from ragflow.store import DocumentStore
from ragflow.store.replica import ReplicaStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import DOCS, Served, running, serving
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

from ragflow.indexers.pgvector import PgvectorIndex

FILES = {
    **DOCS,
    "code/paths.md": "Join paths with os.path.join, never by hand; getFileName returns the last part.\n",
    "code/wal.md": "Raise max_wal_senders before adding a standby; the harbor standby streams the WAL.\n",
    "notes/river.txt": "The river floods the meadow; the keeper of the stone bridge watches the river.\n",
}
QUERIES = [
    "copper reef lantern",
    "stone bridge river",
    "os.path.join",
    "path join",
    "max_wal_senders",
    "get file name",
    "harbor keeper",
    "the river meadow floods",
    "no such words anywhere",
]
FILTERS: list[dict[str, str]] = [
    {},
    {"filepath_globpattern": "**/notes/**"},
    {"metadata_filter": "contains(path, 'code')"},
    {
        "metadata_filter": "contains(path, 'guides') || contains(path, 'notes')",
        "filepath_globpattern": "**/*.md",
    },
]


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    root = tmp_path_factory.mktemp("replica")
    table = PostgresServer.table_name("replica")
    with serving(root, FILES) as embedded:
        index = PgvectorIndex(dim=64, dsn=shared_postgres().dsn, table=table)
        try:
            # the same folder into PostgreSQL (an embedded store over the pgvector index writes it)
            DocumentStore(
                FolderSource(root, reconcile_interval=None), embedder=HashingEmbedder(), index=index
            ).run_static()
            replica = ReplicaStore(
                PgvectorIndex(dim=64, dsn=index.dsn, table=table), embedder=HashingEmbedder()
            )
            with replica, running(create_app(replica)) as url:
                assert replica.wait_until_fresh(10)
                yield embedded, url
        finally:
            index.drop()


def _hits(url: str, **body: Any) -> list[tuple[str, str, float]]:
    response = requests.post(url + "/v1/retrieve", json=body)
    assert response.status_code == 200, response.text
    return [(Path(h["metadata"]["path"]).name, h["text"], round(h["dist"], 4)) for h in response.json()]


@pytest.mark.parametrize("mode", ["lexical", "hybrid", "vector", None])
def test_a_replica_answers_every_mode_as_the_embedded_store(
    both: tuple[Served, str], mode: str | None
) -> None:
    embedded, replica = both
    options = {} if mode is None else {"search_mode": mode}
    answered = 0
    for query in QUERIES:
        for filters in FILTERS:
            for k in (1, 3, 8):
                want = _hits(embedded.url, query=query, k=k, **filters, **options)
                got = _hits(replica, query=query, k=k, **filters, **options)
                assert _tied_alike(got, want), (query, filters, k, got, want)
                answered += bool(want)
    assert answered


def _tied_alike(got: list[tuple[str, str, float]], want: list[tuple[str, str, float]]) -> bool:
    """Equal, except that chunks of equal distance may come in another order, and those tied at the
    last distance may be others (which of several equally near chunks a top-k keeps is arbitrary: the
    fast embedder of these tests gives many chunks the same distance)."""
    if [d for *_, d in got] != [d for *_, d in want]:
        return False
    last = want[-1][2] if want else None
    for distance in {d for *_, d in want} - {last}:
        if sorted(h for h in got if h[2] == distance) != sorted(h for h in want if h[2] == distance):
            return False
    return True


def test_the_replicas_lexical_side_finds_identifiers(both: tuple[Served, str]) -> None:
    _, replica = both
    assert [name for name, _, _ in _hits(replica, query="max_wal_senders", k=3, search_mode="lexical")] == [
        "wal.md"
    ]
    assert [name for name, _, _ in _hits(replica, query="path join", k=1, search_mode="lexical")] == [
        "paths.md"
    ]
    assert _hits(replica, query="no such words anywhere", k=3, search_mode="lexical") == []
