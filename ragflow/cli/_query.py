"""``ragflow query``: ask a running server for the chunks closest to a text and print them."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from ragflow.cli._client import Client, add_client_arguments
from ragflow.cli._errors import EXIT_OK
from ragflow.errors import ConfigError

HELP = "retrieve the chunks closest to a text from a running server"
DESCRIPTION = "Ask a running server (POST /v1/retrieve) for the chunks closest to TEXT."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``query``'s options."""
    parser.add_argument("text", help="what to search for")
    add_client_arguments(parser)
    parser.add_argument("--k", type=int, default=3, help="how many chunks (default: 3)")
    parser.add_argument("--filter", help="JMESPath metadata filter, e.g. \"contains(path, 'guide')\"")
    parser.add_argument("--glob", help="only files whose path matches this glob, e.g. '**/*.md'")
    parser.add_argument(
        "--mode",
        choices=("vector", "lexical", "hybrid"),
        help="search mode (default: the server's, hybrid; docs/retrieval.md)",
    )
    parser.add_argument(
        "--context",
        type=int,
        default=0,
        metavar="N",
        help="show each hit with N neighbouring chunks each side",
    )
    parser.add_argument("--json", action="store_true", help="print the server's JSON answer")


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow query`` and return its exit code."""
    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    client = Client(args.url, args.api_key, args.timeout)
    body: dict[str, Any] = {
        "query": args.text,
        "k": args.k,
        "metadata_filter": args.filter,
        "filepath_globpattern": args.glob,
    }
    if args.mode is not None:  # sent only when asked for: an older server keeps answering
        body["search_mode"] = args.mode
    if args.context:
        body["context_window"] = args.context
    hits = client.post("/v1/retrieve", body)
    if args.json:
        print(json.dumps(hits, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        print("no matching chunks")
    for rank, hit in enumerate(hits, 1):
        metadata = hit.get("metadata") or {}
        page = f" (page {metadata['page_number']})" if "page_number" in metadata else ""
        print(f"{rank}. {hit.get('dist', float('nan')):.3f}  {_display_path(metadata)}{page}")
        print(f"   {_snippet(str(hit.get('text', '')))}")
    return EXIT_OK


def _display_path(metadata: dict[str, Any]) -> str:
    path = str(metadata.get("path") or metadata.get("doc_id") or "?")
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(Path.cwd()))
    return path


def _snippet(text: str, width: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
