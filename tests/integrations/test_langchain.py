"""The LangChain retriever through LangChain's own calls (``invoke``, ``ainvoke``, ``batch``, a runnable
chain): ragflow hits as LangChain documents with metadata and citations."""

from __future__ import annotations

import asyncio

from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda

from ragflow.integrations.langchain import RagflowRetriever
from ragflow.store import DocumentStore
from tests.integrations.conftest import root_of


def test_invoke_returns_the_closest_chunk_with_ragflow_metadata(store: DocumentStore) -> None:
    docs = RagflowRetriever(store=store, k=2).invoke("harbor lantern Mara")
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)
    best = docs[0]
    assert "Mara" in best.page_content
    assert best.metadata["doc_id"] == "lantern.md"
    assert best.metadata["path"] == str(root_of(store) / "lantern.md")
    assert (
        best.metadata["citation"]["number"] == 1
        and best.metadata["citation"]["path"] == best.metadata["path"]
    )
    assert best.metadata["score"] == 1 - best.metadata["dist"] > docs[1].metadata["score"]
    assert best.id is not None


def test_ainvoke_awaits_the_store_and_honours_the_filters(store: DocumentStore) -> None:
    retriever = RagflowRetriever(store=store, k=5, filepath_globpattern="**/guide/**")
    docs = asyncio.run(retriever.ainvoke("harbor lantern Mara"))
    assert sorted(d.metadata["doc_id"] for d in docs) == ["guide/bread.md", "guide/falcon.txt"]
    jmes = RagflowRetriever(store=store, k=5, metadata_filter="doc_id == `guide/falcon.txt`")
    assert [d.metadata["doc_id"] for d in jmes.invoke("river")] == ["guide/falcon.txt"]


def test_the_retriever_composes_as_a_runnable(store: DocumentStore) -> None:
    chain = RagflowRetriever(store=store, k=1) | RunnableLambda(lambda docs: docs[0].metadata["doc_id"])
    assert chain.batch(["bread dough rise", "falcon canyon nest"]) == ["guide/bread.md", "guide/falcon.txt"]
