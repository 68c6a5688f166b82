"""The Model Context Protocol face of the server: tools ``retrieve``, ``answer``, ``list_documents`` and
``document_status`` (the official ``mcp`` SDK), served over streamable HTTP at ``/mcp`` by the REST app and
over stdio by ``ragflow mcp``.

At ``/mcp`` the server is stateless (each POST is one JSON-RPC exchange answered as JSON), so every call is
checked by the REST API's own key middleware and sees only its key's scope: the tools answer through
``scoped.Caller``, as the web page does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field
from starlette.requests import Request
from starlette.types import ASGIApp

from ragflow import __version__
from ragflow.answer import LLMError
from ragflow.errors import FilterError, RagflowError

from .scoped import Caller, answer_body, status_of
from .state import caller_of, state_of

__all__ = ["MCP_PATH", "McpEndpoint", "mcp_server"]

MCP_PATH = "/mcp"
"""Where the REST app serves MCP (POST only: the stateless streamable HTTP transport)."""

INSTRUCTIONS = (
    "ragflow keeps a live vector index of documents in sync with where they live. Use `retrieve` for the "
    "passages closest to a query (with document path, page, character span and cosine distance), "
    "`answer` for an answer with numbered citations, `list_documents` to see what is indexed and "
    "`document_status` for one document's state or error. Filters: filepath_globpattern is a glob on the "
    "document path (e.g. '**/*.md'); metadata_filter is a JMESPath expression over the document metadata "
    "(e.g. \"contains(path, 'guides')\")."
)

_Glob = Annotated[
    str | None, Field(description="Only documents whose path matches this glob, e.g. '**/*.md'")
]
_Filter = Annotated[
    str | None,
    Field(description="Only documents whose metadata passes this JMESPath filter, e.g. \"owner == 'ann'\""),
]

CallerOf = Callable[[Context], Caller]
"""Who is calling a tool: from the HTTP request at ``/mcp``, fixed for ``ragflow mcp``."""


def mcp_server(caller_of_context: CallerOf) -> MCPServer:
    """The MCP server with ragflow's tools, answering as ``caller_of_context(ctx)`` may see."""
    server = MCPServer("ragflow", version=__version__, instructions=INSTRUCTIONS)

    @server.tool(title="Retrieve passages")
    async def retrieve(
        ctx: Context,
        query: Annotated[str, Field(description="What to search for, in natural language", min_length=1)],
        k: Annotated[int, Field(description="How many passages to return", ge=1)] = 3,
        filepath_globpattern: _Glob = None,
        metadata_filter: _Filter = None,
    ) -> list[dict[str, Any]]:
        """The k passages closest to the query, best first: text, doc_id, path, page, start/end (the
        character span in the parsed page), dist (cosine distance, lower is closer) and metadata."""
        caller = caller_of_context(ctx)
        return await _run(caller.passages, query, k, metadata_filter, filepath_globpattern)

    @server.tool(title="Answer with citations")
    async def answer(
        ctx: Context,
        question: Annotated[str, Field(description="The question to answer", min_length=1)],
        k: Annotated[
            int | None, Field(description="Passages to answer from (default: server's)", ge=1)
        ] = None,
        filepath_globpattern: _Glob = None,
        metadata_filter: _Filter = None,
    ) -> dict[str, Any]:
        """An answer from the documents with numbered citations ([1], [2]...), each with path, page, the
        quoted span and its character offsets. Without a configured LLM the answer is extractive (quoted
        from the best passages) and says so."""
        caller = caller_of_context(ctx)
        result = await _run(caller.answer, question, k, metadata_filter, filepath_globpattern)
        return answer_body(result)

    @server.tool(title="List documents")
    async def list_documents(
        ctx: Context,
        filepath_globpattern: _Glob = None,
        metadata_filter: _Filter = None,
        status: Annotated[
            str | None, Field(description="Only documents in this state: indexed, pending or error")
        ] = None,
    ) -> list[dict[str, Any]]:
        """The documents the server holds (that this key may see): doc_id, path, status (indexed,
        pending, error), chunks, error, seen_at and indexed_at (Unix seconds)."""
        if status not in (None, "indexed", "pending", "error"):
            raise ToolError(f"status must be indexed, pending or error, got {status!r}")
        caller = caller_of_context(ctx)
        return await _run(_listed, caller, metadata_filter, filepath_globpattern, status)

    @server.tool(title="Document status")
    async def document_status(
        ctx: Context,
        doc_id: Annotated[str, Field(description="The document's id or path, as list_documents gives it")],
    ) -> dict[str, Any]:
        """One document's state: status (indexed, pending, error), its chunks, the error's message, when
        its current version was seen and when it became searchable (Unix seconds)."""
        caller = caller_of_context(ctx)
        found = await _run(caller.document, doc_id)
        if found is None:
            raise ToolError(f"no document {doc_id!r}; list_documents lists those there are")
        return status_of(found)

    return server


def _listed(
    caller: Caller, metadata_filter: str | None, glob: str | None, status: str | None
) -> list[dict[str, Any]]:
    from ragflow.filters import compile_filter

    predicate = compile_filter(metadata_filter, glob)
    found = [status_of(d) for d in caller.documents() if predicate is None or predicate(d.metadata)]
    return [d for d in found if status is None or d["status"] == status]


async def _run(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` on a worker thread, its errors turned into tool errors the agent can read."""
    try:
        return await anyio.to_thread.run_sync(lambda: function(*args))
    except (ValueError, FilterError, LLMError, RagflowError) as exc:
        raise ToolError(str(exc)) from None


def _http_caller(ctx: Context) -> Caller:
    request = ctx.request_context.request
    if not isinstance(request, Request):
        raise ToolError("this tool is served over HTTP only here")
    return Caller(state_of(request), caller_of(request))


class McpEndpoint:
    """``/mcp`` of the REST app: the ASGI endpoint to route POSTs to, and ``running()``, which the app's
    lifespan enters (the SDK's session manager runs a task group for the requests)."""

    def __init__(self) -> None:
        self.server = mcp_server(_http_caller)
        # No Host/Origin check here: like the REST API it sits behind the API key; a browser on another
        # origin cannot send the JSON POST without a CORS grant (server.cors_origins).
        self.server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.manager = self.server.session_manager
        self.app: ASGIApp = StreamableHTTPASGIApp(self.manager)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield
