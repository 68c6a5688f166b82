"""The summary of ``ragflow index`` (ragflow/cli/_index.py): how the embedding model ran."""

from __future__ import annotations

from ragflow.cli._index import IndexSummary


def test_the_index_summary_says_how_the_embedder_ran() -> None:
    embedder = {
        "device": "cpu",
        "precision": "bfloat16",
        "single_precision": "float32",
        "batch_size": 16,
        "texts_embedded": 300,
        "embed_seconds": 3.0,
        "texts_per_second": 100.0,
    }
    summary = IndexSummary(3, 300, 300, 0, (), 3.2, embedder=embedder)
    assert list(summary.lines())[-1] == (
        "embedder   cpu, bfloat16 in batches of 16 (one text: float32), 100.0 chunks/s inside the model"
    )
    assert summary.to_dict()["embedder"] == embedder
    assert not any(line.startswith("embedder") for line in IndexSummary(1, 1, 1, 0, (), 1.0).lines())
