"""The ``VectorIndex`` contract, unchanged, against ``PgvectorIndex`` on a real PostgreSQL 18 + pgvector
(started once per test session by ``tests/servers/postgres.py``)."""

from __future__ import annotations

import pytest

from ragflow.documents import VectorIndex
from tests.indexers.contract import VectorIndexContract
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

from ragflow.indexers.pgvector import PgvectorIndex


class TestPgvectorIndex(VectorIndexContract):
    exact = False  # HNSW: approximate top-k

    def make_index(self, dim: int) -> VectorIndex:
        return PgvectorIndex(dim=dim, dsn=shared_postgres().dsn, table=PostgresServer.table_name("contract"))

    def dispose(self, index: VectorIndex) -> None:
        assert isinstance(index, PgvectorIndex)
        index.drop()
