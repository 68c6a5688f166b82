"""How the embedding model runs (device, precision, batch size, chunks/s) in ``/v1/statistics`` and
``/metrics``, for an embedder that reports it (the local model); nothing extra for one that does not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from ragflow.connectors.folder import FolderSource
from ragflow.embedders.local import EmbedderStats
from ragflow.server import create_app
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.server.conftest import running


class ReportingEmbedder(HashingEmbedder):
    """Reports as the local model does after a calibration chose bf16 batches of 16."""

    def stats(self) -> EmbedderStats:
        return EmbedderStats("cpu", "bfloat16", "float32", 16, len(self.embedded), 0.5, "compiling")


@contextmanager
def indexed(folder: Path, embedder: HashingEmbedder) -> Iterator[str]:
    """A server over one indexed document; yields its URL."""
    (folder / "a.md").write_text("Some words to index.")
    store = DocumentStore(FolderSource(folder, reconcile_interval=None), embedder=embedder)
    with running(create_app(store)) as url:
        store.start()
        try:
            assert store.wait_until_fresh(30)
            yield url
        finally:
            store.stop()


def test_statistics_and_metrics_say_how_the_model_runs(tmp_path: Path) -> None:
    with indexed(tmp_path, ReportingEmbedder()) as url:
        stats = requests.get(url + "/v1/statistics", timeout=10).json()
        assert stats["file_count"] == 1
        embedder = stats["embedder"]
        assert (embedder["device"], embedder["precision"], embedder["single_precision"]) == (
            "cpu",
            "bfloat16",
            "float32",
        )
        assert embedder["batch_size"] == 16 and embedder["texts_per_second"] > 0
        assert embedder["compiled"] == "compiling"
        text = requests.get(url + "/metrics", timeout=10).text
        assert (
            'ragflow_embedder_info{device="cpu",precision="bfloat16",single_precision="float32"} 1.0' in text
        )
        assert "ragflow_embedder_batch_size 16.0" in text
        assert 'ragflow_embedder_compiled{state="compiling"} 1.0' in text
        assert "ragflow_embedder_chunks_per_second" in text


def test_an_embedder_that_reports_nothing_adds_nothing(tmp_path: Path) -> None:
    with indexed(tmp_path, HashingEmbedder()) as url:
        assert set(requests.get(url + "/v1/statistics", timeout=10).json()) == {
            "file_count",
            "last_modified",
            "last_indexed",
        }
        text = requests.get(url + "/metrics", timeout=10).text
        assert "ragflow_embedder_info{" not in text and "ragflow_embedder_compiled{" not in text
