"""A server is ready only when it can answer at full speed: ``/readyz`` waits for the initial snapshot AND
for the query embedder to be loaded (a slow-loading fake proves it); a query embedder that cannot load
keeps the server not ready."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import requests

from ragflow.connectors.folder import FolderSource
from ragflow.server import create_app
from ragflow.store import DocumentStore
from ragflow.store.query_warmup import QueryWarmup
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import running


class SlowLoadingEmbedder(HashingEmbedder):
    """A model that takes until ``release`` is set to load, as a local model takes seconds."""

    def __init__(self, release: threading.Event, failure: Exception | None = None) -> None:
        super().__init__()
        self.release = release
        self.failure = failure
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        self.release.wait(30)
        if self.failure is not None:
            raise self.failure


def readyz(url: str) -> requests.Response:
    return requests.get(url + "/readyz", timeout=10)


def until_ready(url: str, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while (status := readyz(url).status_code) != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    return status


def test_readyz_stays_not_ready_until_the_query_model_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Some words to index.")
    release = threading.Event()
    embedder = SlowLoadingEmbedder(release)
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder)
    with running(create_app(store)) as url:
        store.start()
        try:
            assert store.wait_until_fresh(30)  # the snapshot is searchable...
            time.sleep(0.2)
            response = readyz(url)  # ...but the query model is still loading
            assert response.status_code == 503 and response.json()["error"]["type"] == "not_ready"
            assert "loading the query embedding model" in response.json()["error"]["message"]
            assert embedder.loads == 1  # loading began with the server, not with the first query
            release.set()
            assert until_ready(url) == 200
            assert embedder.loads == 1
        finally:
            store.stop()


def test_a_query_model_that_cannot_load_keeps_the_server_not_ready(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Some words to index.")
    release = threading.Event()
    release.set()
    embedder = SlowLoadingEmbedder(release, failure=RuntimeError("weights missing"))
    store = DocumentStore(FolderSource(tmp_path, reconcile_interval=None), embedder=embedder)
    with running(create_app(store)) as url:
        store.start()
        try:
            assert store.wait_until_fresh(30)
            time.sleep(0.2)
            response = readyz(url)
            assert response.status_code == 503 and response.json()["error"]["type"] == "failed"
            assert "the query embedder could not load: weights missing" in response.json()["error"]["message"]
        finally:
            store.stop()


def test_the_warmup_loads_once_and_reports_how_it_ended() -> None:
    release = threading.Event()
    warmup = QueryWarmup(SlowLoadingEmbedder(release)).start().start()
    assert not warmup.wait(0.05) and not warmup.done
    release.set()
    assert warmup.wait(5) and warmup.ready and warmup.error is None and warmup.seconds is not None
    assert warmup.embedder.loads == 1  # type: ignore[attr-defined]
    failing = QueryWarmup(SlowLoadingEmbedder(release, failure=RuntimeError("no weights"))).start()
    assert not failing.wait(5) and failing.done
    assert isinstance(failing.error, RuntimeError)


def test_an_embedder_without_load_is_warm_at_once() -> None:
    assert QueryWarmup(HashingEmbedder()).start().wait(5)
