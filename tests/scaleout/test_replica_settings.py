"""``ragflow serve --index pgvector`` honours the configuration's ``retrieval:`` section as the embedded
server does: for each non-default setting, a replica built as ``serve`` builds it (``_replica_store``)
answers ``/v1/retrieve`` over HTTP exactly as an embedded server built from the same section, and
otherwise than a replica with the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from ragflow.cli._serve import _replica_store
from ragflow.config import RagflowConfig
from ragflow.retrieval import CrossEncoderReranker
from ragflow.server import create_app
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.scaleout.test_replica_retrieval import FILES, QUERIES, _hits, _tied_alike
from tests.server.conftest import running
from tests.servers.postgres import PostgresServer, shared_postgres

pytest.importorskip("psycopg")
pytest.importorskip("pgvector")

from ragflow.indexers.pgvector import PgvectorIndex

SETTINGS: dict[str, dict[str, Any]] = {
    "vector": {"search_mode": "vector"},
    "lexical": {"search_mode": "lexical"},
    "fusion": {"rrf_k": 1, "vector_weight": 0.2, "lexical_weight": 3.0, "fusion_depth": 3},
    "rerank": {"rerank": True, "rerank_k": 4},
}


class _LetterCounter:
    """A stand-in cross-encoder: scores a passage by how many times it holds the letter ``e``."""

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
        return [float(text.count("e")) for _, text in pairs]


class _Deployment:
    """One folder, indexed into a pgvector table; builds embedded servers and replicas over it."""

    def __init__(self, root: Path, table: str, stack: ExitStack) -> None:
        self.root, self.table, self.stack = root, table, stack
        (root / "reranker").mkdir()  # CrossEncoderReranker wants a folder; _LetterCounter is its model

    def config(self, retrieval: dict[str, Any], *, replica: bool) -> RagflowConfig:
        data: dict[str, Any] = {
            "sources": [{"kind": "folder", "root": str(self.root / "docs")}],
            "persistence": {"state_dir": None},  # not ./.ragflow
        }
        if replica:
            data["index"] = {"kind": "pgvector", "dsn": shared_postgres().dsn, "table": self.table}
        if retrieval.get("rerank"):
            retrieval = {**retrieval, "rerank_model": str(self.root / "reranker")}
        return RagflowConfig.from_dict({**data, "retrieval": retrieval})

    def embedded(self, retrieval: dict[str, Any]) -> str:
        """The URL of an embedded server (the default faiss index) built from ``retrieval``."""
        store = self.config(retrieval, replica=False).build_store()
        self.stack.enter_context(store)
        assert store.wait_until_fresh(30), "the embedded store did not index the folder"
        return self.stack.enter_context(running(create_app(store)))

    def replica(self, retrieval: dict[str, Any]) -> str:
        """The URL of a replica built as ``ragflow serve --index pgvector`` builds it."""
        store = _replica_store(self.config(retrieval, replica=True), "pgvector")
        self.stack.enter_context(store)
        assert store.wait_until_fresh(10)
        return self.stack.enter_context(running(create_app(store)))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Deployment]:
    root = tmp_path_factory.mktemp("settings")
    for name, text in FILES.items():
        (root / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / name).write_text(text)
    with pytest.MonkeyPatch.context() as patch, ExitStack() as stack:
        patch.setattr(RagflowConfig, "build_embedder", lambda self: HashingEmbedder())
        patch.setattr(CrossEncoderReranker, "_loaded", lambda self: _LetterCounter())
        made = _Deployment(root, PostgresServer.table_name("settings"), stack)
        writer = made.config({}, replica=True).build_store()  # what the workers would have written
        try:
            writer.run_static()
            yield made
        finally:
            stack.close()
            PgvectorIndex(dim=64, dsn=shared_postgres().dsn, table=made.table).drop()


@pytest.fixture(scope="module")
def default_replica(deployment: _Deployment) -> str:
    return deployment.replica({})


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_replica_takes_each_retrieval_setting_as_the_embedded_server(
    deployment: _Deployment, default_replica: str, setting: str
) -> None:
    retrieval = SETTINGS[setting]
    embedded, replica = deployment.embedded(retrieval), deployment.replica(retrieval)
    changed = 0
    for query in QUERIES:
        for k in (3, 8):
            want = _hits(embedded, query=query, k=k)
            got = _hits(replica, query=query, k=k)
            assert _tied_alike(got, want), (setting, query, k, got, want)
            changed += not _tied_alike(got, _hits(default_replica, query=query, k=k))
    assert changed, f"{setting}: {retrieval} changed no answer of the replica"


def test_a_replica_without_the_lexical_index_refuses_lexical_modes_as_the_embedded_server(
    deployment: _Deployment, default_replica: str
) -> None:
    retrieval = {"lexical_index": False, "search_mode": "vector"}
    embedded, replica = deployment.embedded(retrieval), deployment.replica(retrieval)
    for url in (embedded, replica):
        asked: dict[str, Any] = {"query": "harbor keeper", "k": 3, "search_mode": "hybrid"}
        response = requests.post(url + "/v1/retrieve", json=asked)
        assert response.status_code == 400 and "lexical index" in response.text, response.text
    assert requests.post(default_replica + "/v1/retrieve", json={"query": "harbor keeper", "k": 3}).ok
