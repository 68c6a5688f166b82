"""The ``ragflow`` command: serve a live index over HTTP, build one once, and query or inspect a running
server.

    ragflow serve  [PATH | --config FILE] [--host HOST] [--port PORT] [--state-dir DIR]
    ragflow index  [PATH | --config FILE] [--state-dir DIR] [--json] [--strict]
    ragflow query  TEXT [--url URL] [--k K] [--filter EXPR] [--glob PATTERN] [--json]
    ragflow status [--url URL] [--json]
    ragflow status --state-dir DIR [--check] [--json]
    ragflow bench  freshness (--server-cmd CMD | --url URL) [...] | freshness --compare A.json B.json
    ragflow bench  scale [--chunks 1000,10000,100000]
    ragflow mcp    [PATH | --config FILE] [--state-dir DIR]   (MCP tools over stdio)

Exit codes: 0 success, 1 the command failed while running, 2 bad usage or configuration, 3 no server at
the URL. ``query`` and ``status`` import nothing heavy, so they answer in a fraction of a second.

One module per command (``_serve``, ``_index``, ``_query``, ``_status``, ``_bench``); the public names are
these.
"""

from __future__ import annotations

from ragflow.cli._errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CommandError,
    ServerUnreachableError,
)
from ragflow.cli._index import IndexSummary, index_documents
from ragflow.cli._main import build_parser, main
from ragflow.cli._progress import ProgressBar, progress_line

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CommandError",
    "IndexSummary",
    "ProgressBar",
    "ServerUnreachableError",
    "build_parser",
    "index_documents",
    "main",
    "progress_line",
]
