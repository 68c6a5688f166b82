"""Wire compatibility: the exact requests that existing clients send (method, path, headers, JSON shape),
parsed the way those clients parse the answers.

Replayed from the clients' source: Pathway's ``DocumentStoreClient`` and ``RAGClient``
(pathway/xpacks/llm/document_store.py, question_answering.py), LangChain's ``PathwayVectorClient``
(langchain_community/vectorstores/pathway.py) and LlamaIndex's ``PathwayRetriever`` and ``PathwayReader``
(llama-index-retrievers-pathway, llama-index-readers-pathway). All use ``requests``: the retrieval call
sends ``data=json.dumps(...)`` with a JSON content type, the others ``json=...``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.fakes.llm_server import FakeLLMServer
from tests.server.conftest import Served

JSON_HEADERS = {"Content-Type": "application/json"}


def pathway_retrieve(
    url: str,
    query: str,
    k: int = 3,
    metadata_filter: str | None = None,
    filepath_globpattern: str | None = None,
) -> list[dict[str, Any]]:
    """``DocumentStoreClient.query`` / ``_VectorStoreClient.query``: optional fields only when set."""
    data: dict[str, Any] = {"query": query, "k": k}
    if metadata_filter is not None:
        data["metadata_filter"] = metadata_filter
    if filepath_globpattern is not None:
        data["filepath_globpattern"] = filepath_globpattern
    response = requests.post(url + "/v1/retrieve", data=json.dumps(data), headers=JSON_HEADERS, timeout=3)
    return sorted(response.json(), key=lambda x: x["dist"])


def test_document_store_client_requests(served: Served) -> None:
    hits = pathway_retrieve(served.url, "harbor lantern", k=2, metadata_filter="contains(path, `guides`)")
    assert [h["metadata"]["doc_id"] for h in hits] == ["guides/lantern.md", "guides/falcon.md"]
    assert all(isinstance(h["text"], str) and isinstance(h["dist"], float) for h in hits)
    globbed = pathway_retrieve(served.url, "anything", k=5, filepath_globpattern="**/*.txt")
    assert {h["metadata"]["doc_id"] for h in globbed} == {"notes/meadow.txt", "notes/orbit.txt"}

    stats = requests.post(served.url + "/v1/statistics", json={}, headers=JSON_HEADERS, timeout=15).json()
    assert stats["file_count"] == 5 and stats["last_indexed"] >= stats["last_modified"] - 5

    files = requests.post(
        served.url + "/v1/inputs",
        json={"metadata_filter": None, "filepath_globpattern": None, "return_status": False},
        headers=JSON_HEADERS,
        timeout=15,
    ).json()
    assert len(files) == 5 and all("path" in f and "_indexing_status" not in f for f in files)
    with_status = requests.post(
        served.url + "/v1/inputs",
        json={
            "metadata_filter": "contains(path, `reports`)",
            "filepath_globpattern": None,
            "return_status": True,
        },
        headers=JSON_HEADERS,
        timeout=15,
    ).json()
    assert [(f["path"].rsplit("/", 1)[-1], f["_indexing_status"]) for f in with_status] == [
        ("q1.html", "INDEXED")
    ]


def test_langchain_vector_client_requests(served: Served) -> None:
    # similarity_search(query, k=4, metadata_filter=...) -> Document(page_content=text, metadata=metadata)
    rets = pathway_retrieve(served.url, "comet orbit planet", k=4, metadata_filter=None)
    documents = [(ret["text"], ret["metadata"]) for ret in rets]
    assert len(documents) == 4 and "comet" in documents[0][0]
    # similarity_search_with_score -> (Document, dist), lower is closer
    scored = [(ret["text"], ret["dist"]) for ret in pathway_retrieve(served.url, "comet orbit planet", k=2)]
    assert scored[0][1] <= scored[1][1]
    # get_input_files posts both filters, without return_status
    files = requests.post(
        served.url + "/v1/inputs",
        json={"metadata_filter": None, "filepath_globpattern": "**/guides/**"},
        headers=JSON_HEADERS,
        timeout=15,
    ).json()
    assert sorted(f["path"].rsplit("/", 1)[-1] for f in files) == ["falcon.md", "lantern.md"]


def test_llamaindex_retriever_and_reader_requests(served: Served) -> None:
    # PathwayRetriever._retrieve: k=similarity_top_k, score = 1 - dist, sorted by score descending
    rets = pathway_retrieve(served.url, "meadow river flood", k=2)
    nodes = sorted(((ret["text"], 1 - ret["dist"]) for ret in rets), key=lambda node: node[1], reverse=True)
    assert "meadow" in nodes[0][0] and nodes[0][1] >= nodes[1][1]
    # PathwayReader.load_data(query_text, k=4, metadata_filter): the raw list, unsorted by the client
    data = {"query": "quarry revenue", "k": 4, "metadata_filter": "contains(path, `reports`)"}
    raw = requests.post(served.url + "/v1/retrieve", data=json.dumps(data), headers=JSON_HEADERS, timeout=3)
    documents = [(item["text"], item["metadata"]) for item in raw.json()]
    assert [meta["doc_id"] for _, meta in documents] == ["reports/q1.html"]


@pytest.fixture
def rag_served(serve_app: Any) -> Any:
    with FakeLLMServer() as llm:
        from ragflow.answer import LLMSettings

        yield serve_app(llm=LLMSettings(llm.base_url, llm.api_key, llm.model, timeout=5, max_retries=0)), llm


def test_rag_client_requests(rag_served: Any) -> None:
    served, llm = rag_served

    def send_post_request(path: str, payload: dict[str, Any]) -> Any:
        response = requests.post(served.url + path, json=payload, headers={}, timeout=90)
        response.raise_for_status()
        return response.json()

    # answer(prompt, filters=None, model=None, return_context_docs=None): keys only when given
    answer = send_post_request("/v2/answer", {"prompt": "Who lights the harbor lantern?"})
    assert isinstance(answer["response"], str) and answer["response"].endswith("[1]")
    assert "context_docs" not in answer
    detailed = send_post_request(
        "/v2/answer",
        {
            "prompt": "When does the falcon hunt?",
            "filters": "contains(path, `falcon`)",
            "model": "m2",
            "return_context_docs": True,
        },
    )
    assert [doc["metadata"]["doc_id"] for doc in detailed["context_docs"]] == ["guides/falcon.md"]
    assert llm.requests[-1]["model"] == "m2"
    # the older servers' route and body
    legacy = send_post_request("/v1/pw_ai_answer", {"prompt": "What floods?", "filters": None, "model": None})
    assert isinstance(legacy["response"], str)
    # summarize(text_list, model=None)
    summary = send_post_request("/v2/summarize", {"text_list": ["One text.", "Another text."]})
    assert isinstance(summary, str) and summary
    # retrieve and statistics go through DocumentStoreClient at the same URL
    assert len(pathway_retrieve(served.url, "lantern", k=1)) == 1
    # list_documents(filters=None, keys=["path"]): return_status always sent, keys kept client-side
    listed = send_post_request("/v2/list_documents", {"return_status": True})
    paths = [{k: v for k, v in doc.items() if k in ["path"]} for doc in listed]
    assert len(paths) == 5 and all(set(p) == {"path"} for p in paths)
    filtered = send_post_request(
        "/v2/list_documents", {"return_status": True, "metadata_filter": "contains(path, `notes`)"}
    )
    assert {doc["_indexing_status"] for doc in filtered} == {"INDEXED"} and len(filtered) == 2
    assert len(send_post_request("/v1/pw_list_documents", {})) == 5
