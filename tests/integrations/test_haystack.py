"""The Haystack component in Haystack's own ``Pipeline.run`` and ``Pipeline.run_async``: ragflow hits as
Haystack documents with metadata and citations."""

from __future__ import annotations

import asyncio

from haystack import Document, Pipeline

from ragflow.integrations.haystack import RagflowRetriever
from ragflow.store import DocumentStore
from tests.integrations.conftest import root_of


def test_a_pipeline_run_returns_ragflow_hits_as_documents(store: DocumentStore) -> None:
    pipeline = Pipeline()
    pipeline.add_component("retriever", RagflowRetriever(store, top_k=2))
    docs = pipeline.run({"retriever": {"query": "harbor lantern Mara"}})["retriever"]["documents"]
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    best = docs[0]
    assert best.content is not None and "Mara" in best.content
    assert best.meta["doc_id"] == "lantern.md" and best.meta["path"] == str(root_of(store) / "lantern.md")
    assert best.meta["citation"]["number"] == 1
    assert best.score == 1 - best.meta["dist"] > docs[1].score


def test_an_async_pipeline_run_awaits_the_store_with_per_run_filters(store: DocumentStore) -> None:
    pipeline = Pipeline()
    pipeline.add_component("retriever", RagflowRetriever(store, top_k=5))
    inputs = {"retriever": {"query": "harbor lantern Mara", "filepath_globpattern": "**/guide/**"}}
    docs = asyncio.run(pipeline.run_async(inputs))["retriever"]["documents"]
    assert sorted(d.meta["doc_id"] for d in docs) == ["guide/bread.md", "guide/falcon.txt"]
