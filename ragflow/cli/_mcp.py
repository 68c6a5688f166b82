"""``ragflow mcp``: index the configured sources and serve the MCP tools (``retrieve``, ``answer``,
``list_documents``, ``document_status``) over stdio, for desktop clients and editors that launch a
command. Stdout carries the protocol only; messages and logs go to stderr."""

from __future__ import annotations

import argparse
import logging

from ragflow.cli._config_options import add_config_arguments, config_from
from ragflow.cli._errors import EXIT_OK, CommandError
from ragflow.cli._output import configure_logging, say

log = logging.getLogger("ragflow.cli")

HELP = "index documents and serve the MCP tools over stdio (for clients that launch a command)"
DESCRIPTION = (
    "Index the configured sources, keep the index in sync with them, and serve the Model Context "
    "Protocol tools retrieve, answer, list_documents and document_status on stdin/stdout until the "
    "client closes them. The tools answer from what is indexed so far; list_documents tells what is "
    "still pending. A server started with `ragflow serve` offers the same tools at /mcp over HTTP."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``mcp``'s options."""
    add_config_arguments(parser)
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="how much to log on stderr (default: warning)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve MCP over stdio until the client disconnects; returns the exit code."""
    configure_logging(args.log_level)
    config = config_from(args)
    try:
        import anyio

        from ragflow.server import create_app
        from ragflow.server.mcp import mcp_server
        from ragflow.server.scoped import Caller
    except ImportError as exc:
        raise CommandError(f"`ragflow mcp` needs the MCP SDK (pip install mcp): {exc}") from None
    store = config.build_store()
    # the REST app's state is what the tools answer from (the answerer, max_k); no HTTP is served
    state = create_app(store, llm=config.llm_settings(), max_k=config.server.max_k).state.ragflow
    server = mcp_server(lambda ctx: Caller(state, None))
    say(f"ragflow mcp: indexing {', '.join(feed.name for feed in store.feeds)}; MCP on stdio")
    store.start()
    try:
        anyio.run(server.run_stdio_async)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            store.stop(timeout=10)
        except Exception:  # the engine's own failure: the tools reported it already
            log.debug("the store stopped with an error", exc_info=True)
    if store.engine.failure is not None:
        raise CommandError(f"the indexing engine stopped: {store.engine.failure}")
    return EXIT_OK
