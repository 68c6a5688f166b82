"""The MCP tools at ``/mcp`` through the official SDK's own client over streamable HTTP, against a real
server with keys and an LLM (``FakeLLMServer``, a real HTTP server speaking OpenAI's protocol): the tools
are listed with their arguments, each one answers, bad arguments are tool errors the agent can read, a
request without a known key is refused, and a scoped key sees only its scope through every tool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from ragflow.answer import LLMSettings
from ragflow.server.auth import ApiKey, Role, key_digest
from ragflow.server.scopes import Scope
from tests.fakes.llm_server import FakeLLMServer
from tests.server.conftest import Served, serving

READER = "mcp-reader-secret-0123456789"
GUIDES = "mcp-guides-secret-0123456789"
KEYS = [
    ApiKey("reader", Role.READ, key_digest(READER)),
    ApiKey("guides", Role.READ, key_digest(GUIDES), Scope("**/guides/**", None)),
]
TOOLS = {"retrieve", "answer", "list_documents", "document_status"}

T = TypeVar("T")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with FakeLLMServer() as llm:
        settings = LLMSettings(llm.base_url, llm.api_key, llm.model)
        with serving(tmp_path_factory.mktemp("docs"), api_keys=KEYS, llm=settings) as served:
            yield served


def with_client(served: Served, key: str | None, use: Callable[[Client], Awaitable[T]]) -> T:
    """``use(client)`` with an MCP client connected to ``served``'s ``/mcp`` with ``key``."""

    async def run() -> T:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client,
        ):
            return await use(client)

    return asyncio.run(run())


def call(served: Served, tool: str, arguments: dict[str, Any], key: str | None = READER) -> CallToolResult:
    return with_client(served, key, lambda client: client.call_tool(tool, arguments))


def text_of(result: CallToolResult) -> str:
    return "".join(part.text for part in result.content if isinstance(part, TextContent))


def structured(result: CallToolResult) -> Any:
    assert not result.is_error, text_of(result)
    content = result.structured_content
    assert content is not None
    return content.get("result", content)


def test_the_four_tools_are_listed_with_their_arguments(served: Served) -> None:
    listed = with_client(served, READER, lambda client: client.list_tools())
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    retrieve = tools["retrieve"].input_schema
    assert retrieve["required"] == ["query"]
    assert {"query", "k", "filepath_globpattern", "metadata_filter"} <= set(retrieve["properties"])
    assert tools["document_status"].input_schema["required"] == ["doc_id"]
    assert all(tool.description for tool in tools.values())


def test_retrieve_returns_passages_with_path_page_span_and_distance(served: Served) -> None:
    passages = structured(call(served, "retrieve", {"query": "harbor lantern keeper", "k": 2}))
    assert len(passages) == 2
    best = passages[0]
    assert best["path"].endswith("guides/lantern.md") and "lantern is lit at dusk" in best["text"]
    assert best["start"] == 0 and best["end"] == len(best["text"]) and "page" in best
    assert 0 <= best["dist"] <= passages[1]["dist"]
    narrowed = call(served, "retrieve", {"query": "lantern", "k": 5, "filepath_globpattern": "**/*.txt"})
    assert {p["path"].rsplit(".", 1)[1] for p in structured(narrowed)} == {"txt"}


def test_answer_cites_the_passages_it_used(served: Served) -> None:
    body = structured(call(served, "answer", {"question": "Who lights the harbor lantern?", "k": 2}))
    assert not body["extractive"] and body["found"]
    assert "[1]" in body["answer"]
    (citation,) = body["citations"]
    assert citation["number"] == 1 and citation["path"].endswith("guides/lantern.md")
    assert citation["text"] in served.root.joinpath("guides/lantern.md").read_text()
    assert {"page", "start", "end", "dist"} <= set(citation)


def test_list_documents_and_document_status(served: Served) -> None:
    documents = structured(call(served, "list_documents", {}))
    assert {d["doc_id"] for d in documents} == {
        "guides/lantern.md",
        "guides/falcon.md",
        "notes/meadow.txt",
        "notes/orbit.txt",
        "reports/q1.html",
    }
    assert {d["status"] for d in documents} == {"indexed"}
    only = structured(call(served, "list_documents", {"filepath_globpattern": "**/notes/*"}))
    assert {d["doc_id"] for d in only} == {"notes/meadow.txt", "notes/orbit.txt"}
    assert structured(call(served, "list_documents", {"status": "error"})) == []
    status = structured(call(served, "document_status", {"doc_id": "notes/orbit.txt"}))
    assert status["status"] == "indexed" and status["chunks"] == 1 and status["error"] is None
    assert status["indexed_at"] >= status["seen_at"] > 0
    by_path = structured(call(served, "document_status", {"doc_id": status["path"]}))
    assert by_path["doc_id"] == "notes/orbit.txt"


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        ("retrieve", {"k": 2}, "query"),
        ("retrieve", {"query": "lantern", "k": 0}, "k"),
        ("retrieve", {"query": "lantern", "k": 10_000}, "max_k"),
        ("retrieve", {"query": "lantern", "metadata_filter": "path =="}, "invalid metadata filter"),
        ("answer", {"question": ""}, "question"),
        ("list_documents", {"status": "sleeping"}, "indexed, pending or error"),
        ("document_status", {"doc_id": "no/such.md"}, "no document 'no/such.md'"),
        ("document_status", {}, "doc_id"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_bad_arguments_are_tool_errors_that_say_what_was_wrong(
    served: Served, tool: str, arguments: dict[str, Any], says: str
) -> None:
    result = call(served, tool, arguments)
    assert result.is_error
    assert says in text_of(result)


@pytest.mark.parametrize("key", [None, "not-a-key-0123456789"], ids=["no key", "wrong key"])
def test_without_a_known_key_mcp_is_refused(served: Served, key: str | None) -> None:
    statuses: list[int] = []

    async def connect() -> None:
        async def record(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [record]}) as http,
            Client(streamable_http_client(served.url + "/mcp", http_client=http)) as client,
        ):
            await client.call_tool("retrieve", {"query": "lantern"})

    with pytest.raises(BaseException, match="error"):  # the SDK raises out of its task group
        asyncio.run(connect())
    assert statuses and set(statuses) == {401}


def test_a_scoped_key_sees_only_its_scope_through_every_tool(served: Served) -> None:
    passages = structured(call(served, "retrieve", {"query": "meadow river spring", "k": 5}, key=GUIDES))
    assert passages and all("/guides/" in p["path"] for p in passages)
    documents = structured(call(served, "list_documents", {}, key=GUIDES))
    assert {d["doc_id"] for d in documents} == {"guides/lantern.md", "guides/falcon.md"}
    outside = call(served, "document_status", {"doc_id": "notes/meadow.txt"}, key=GUIDES)
    assert outside.is_error and "no document" in text_of(outside)
    body = structured(call(served, "answer", {"question": "When does the meadow flood?"}, key=GUIDES))
    assert all("/guides/" in c["path"] for c in body["citations"])
    widened = call(served, "retrieve", {"query": "meadow", "metadata_filter": "`true` || `true`"}, key=GUIDES)
    assert widened.is_error or all("/guides/" in p["path"] for p in structured(widened))
