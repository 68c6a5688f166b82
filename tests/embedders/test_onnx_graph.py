"""Tests for ragflow.embedders.onnx_graph with the real all-MiniLM-L6-v2 model: the exported graph's vectors
match torch's float32 ones within the cache's bound on real text, a forced ``float32-onnx`` runs on it, a
damaged cached graph is exported again, and where no graph can be had the model runs in torch (or, when
the graph was demanded, a clear error says why)."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ragflow.embedders.onnx_graph as onnx_graph
from ragflow.embedders.local import LocalEmbedder
from ragflow.embedders.precision import COSINE_BOUND, Precision
from ragflow.errors import EmbedError
from ragflow.splitter import TokenSplitter
from tests.embedders.test_local import stdlib_prose

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def torch_float32() -> Iterator[LocalEmbedder]:
    loaded = LocalEmbedder(precision="float32", batch_size=8)
    loaded.load()
    yield loaded


@pytest.fixture(scope="module")
def onnx_float32() -> Iterator[LocalEmbedder]:
    loaded = LocalEmbedder(precision="float32-onnx", batch_size=8)
    loaded.load()
    yield loaded


def test_onnx_vectors_match_torch_float32_within_the_bound_on_real_text(
    torch_float32: LocalEmbedder, onnx_float32: LocalEmbedder
) -> None:
    chunks = [c.text for c in TokenSplitter(torch_float32.max_tokens).split(stdlib_prose())][:128]
    assert len(chunks) == 128 and onnx_float32.model_id == torch_float32.model_id  # one embedding cache
    assert onnx_float32._onnx is not None and onnx_float32.plan.precisions == {Precision.FLOAT32_ONNX}
    cosines = np.sum(torch_float32.embed(chunks) * onnx_float32.embed(chunks), axis=1)
    assert cosines.min() >= COSINE_BOUND, f"min cosine {cosines.min():.7f}"
    queries = ["how do I parse command line options", "copy a directory tree", "log to a file"]
    together = np.sum(torch_float32.embed_queries(queries) * onnx_float32.embed_queries(queries), axis=1)
    assert together.min() >= COSINE_BOUND
    vectors = onnx_float32.embed(chunks[:5])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_replica_runs_the_graph_when_the_plan_does(onnx_float32: LocalEmbedder) -> None:
    replica = onnx_float32.replica()
    text = ["the replica has its own onnxruntime session"]
    np.testing.assert_allclose(replica.embed(text), onnx_float32.embed(text), atol=1e-5)
    assert replica._onnx is not None and replica._onnx is not onnx_float32._onnx


def test_a_damaged_cached_graph_is_exported_again(
    onnx_float32: LocalEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert onnx_float32._onnx is not None
    good = onnx_float32._onnx.path
    monkeypatch.setenv("RAGFLOW_ONNX_CACHE", str(tmp_path))
    damaged = tmp_path / good.name
    shutil.copyfile(good, damaged)
    damaged.write_bytes(damaged.read_bytes()[:4096])  # a copy cut short, as by a full disk
    graph = onnx_graph.load_graph(onnx_float32._path, threads=1)
    assert graph is not None and graph.path == damaged
    assert damaged.stat().st_size == good.stat().st_size
    texts = ["a sentence to embed"]
    features = {k: v.numpy() for k, v in onnx_float32.load().preprocess(texts).items() if hasattr(v, "numpy")}
    vector = graph.encode(features)
    vector /= np.linalg.norm(vector, axis=1, keepdims=True)
    np.testing.assert_allclose(vector, onnx_float32.embed(texts), atol=1e-5)


def test_without_a_graph_the_model_runs_in_torch_and_a_forced_graph_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_export(model_path: Path, target: Path) -> None:
        raise subprocess.SubprocessError("the exporter exited with 1: unsupported operator")

    monkeypatch.setenv("RAGFLOW_ONNX_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGFLOW_CALIBRATION_CACHE", str(tmp_path / "calibration.json"))
    monkeypatch.setattr(onnx_graph, "_export_in_child", failing_export)
    monkeypatch.setattr(onnx_graph, "_failed", set())
    with caplog.at_level(logging.WARNING, logger="ragflow.embedders.onnx_graph"):
        plain = LocalEmbedder(batch_size=4)
        assert plain.embed(["still embeds"]).shape == (1, 384)
    assert plain._onnx is None and Precision.FLOAT32_ONNX not in plain.plan.precisions
    assert "unsupported operator" in caplog.text and "torch only" in caplog.text
    with pytest.raises(EmbedError, match=r"precision float32-onnx was asked for .* use precision: auto"):
        LocalEmbedder(precision="float32-onnx", batch_size=4).load()
