"""The LlamaIndex retriever through LlamaIndex's own calls (``retrieve``, ``aretrieve``, a
``RetrieverQueryEngine``): ragflow hits as scored nodes with metadata and citations."""

from __future__ import annotations

import asyncio

from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import get_response_synthesizer
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from ragflow.integrations.llamaindex import RagflowRetriever
from ragflow.store import DocumentStore
from tests.integrations.conftest import root_of


def test_retrieve_returns_scored_nodes_with_ragflow_metadata(store: DocumentStore) -> None:
    nodes = RagflowRetriever(store, k=2).retrieve("harbor lantern Mara")
    assert len(nodes) == 2 and all(isinstance(n, NodeWithScore) for n in nodes)
    best = nodes[0]
    assert "Mara" in best.node.get_content()
    assert best.node.metadata["doc_id"] == "lantern.md"
    assert best.node.metadata["path"] == str(root_of(store) / "lantern.md")
    assert best.node.metadata["citation"]["number"] == 1
    assert best.score == 1 - best.node.metadata["dist"] > (nodes[1].score or 0)
    assert "citation" not in best.node.get_content(metadata_mode=MetadataMode.LLM)


def test_aretrieve_awaits_the_store_and_honours_the_filters(store: DocumentStore) -> None:
    retriever = RagflowRetriever(store, k=5, filepath_globpattern="**/guide/**")
    nodes = asyncio.run(retriever.aretrieve(QueryBundle("harbor lantern Mara")))
    assert sorted(n.node.metadata["doc_id"] for n in nodes) == ["guide/bread.md", "guide/falcon.txt"]


def test_a_query_engine_gets_its_sources_from_the_store(store: DocumentStore) -> None:
    # LlamaIndex's own offline stand-in for a model: the sources are what this test is about
    engine = RetrieverQueryEngine(
        RagflowRetriever(store, k=1), response_synthesizer=get_response_synthesizer(llm=MockLLM())
    )
    response = engine.query("bread dough rise")
    assert [n.node.metadata["doc_id"] for n in response.source_nodes] == ["guide/bread.md"]
