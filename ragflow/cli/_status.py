"""``ragflow status``: show a running server's readiness, statistics and errors, or what a state
directory holds (read from disk, without a server)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ragflow.cli._client import Client, add_client_arguments, error_message
from ragflow.cli._errors import EXIT_FAILURE, EXIT_OK
from ragflow.cli._output import say
from ragflow.errors import ConfigError

HELP = "show a running server's readiness, statistics, sources and errors, or what a state directory holds"
DESCRIPTION = (
    "Show a running server's readiness (/readyz), statistics (/v1/statistics), its sources with their "
    "health (/v1/sources) and the documents it could not index (/v1/errors). With --state-dir, show "
    "instead what a state directory "
    "holds (documents, chunks, source positions, last checkpoint, embedding cache), read from disk "
    "without a server and without changing it (safe while a server runs on it)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``status``'s options."""
    add_client_arguments(parser)
    parser.add_argument(
        "--state-dir", metavar="DIR", help="show what this state directory holds instead of asking a server"
    )
    parser.add_argument(
        "--check", action="store_true", help="with --state-dir: also verify the whole state file (slower)"
    )
    parser.add_argument("--json", action="store_true", help="print everything as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow status`` and return its exit code."""
    if args.state_dir is not None:
        return _state_status(Path(args.state_dir), check=args.check, as_json=args.json)
    if args.check:
        raise ConfigError("--check verifies a state directory: use it with --state-dir DIR")
    client = Client(args.url, args.api_key, args.timeout)
    code, readiness = client.status_of("/readyz")
    stats = client.get("/v1/statistics")
    errors = client.get("/v1/errors")
    sources_code, sources = client.status_of("/v1/sources")
    ready = code == 200
    if args.json:
        report = {
            "url": client.url,
            "ready": ready,
            "readiness": readiness,
            "statistics": stats,
            "sources": sources if sources_code == 200 else None,
            "errors": errors,
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return EXIT_OK
    state = "ready" if ready else (error_message(readiness) or f"not ready (HTTP {code})")
    print(f"server         {client.url}  {state}")
    print(f"documents      {stats.get('file_count')}")
    print(f"last modified  {_when(stats.get('last_modified'))}")
    print(f"last indexed   {_when(stats.get('last_indexed'))}")
    migration = stats.get("migration")
    if migration:
        from ragflow.cli._migrate import gate_lines, progress_lines

        print(f"migration      {str(migration.get('state', '?')).replace('_', ' ')} (ragflow migrate status)")
        for line in [*progress_lines(migration), *gate_lines(migration)]:
            print(line)
    _print_sources(sources_code, sources)
    print(f"errors         {len(errors) if errors else 'none'}")
    for error in errors or []:
        print(f"  {error.get('doc_id', '?')} ({error.get('stage', '?')}): {error.get('message', '')}")
    return EXIT_OK


def _print_sources(code: int, sources: Any) -> None:
    """The sources with their health; an unhealthy one in capitals, with since when and why. Nothing for
    a server older than ``/v1/sources`` (404)."""
    if code == 404:
        return
    if code != 200 or not isinstance(sources, list):
        print(f"sources        unknown: {error_message(sources) or f'HTTP {code}'}")
        return
    unhealthy = [source for source in sources if not source.get("healthy", True)]
    print(f"sources        {len(sources)}" + (f", {len(unhealthy)} UNHEALTHY" if unhealthy else ""))
    for source in sources:
        documents = f"{source.get('documents', 0):,} documents"
        listing = "" if source.get("snapshot_complete") else ", still listing"
        health = "healthy" if source.get("healthy", True) else f"UNHEALTHY since {_when(source.get('since'))}"
        print(f"  {source.get('name', '?')} ({source.get('kind', '?')}): {health}, {documents}{listing}")
        if not source.get("healthy", True):
            print(f"    {source.get('reason') or 'no reason given'}")


def _bytes_text(n: int | None) -> str:
    from ragflow.persistence import human_size

    return human_size(n) if n is not None else "unknown"


def _state_status(state_dir: Path, *, check: bool, as_json: bool) -> int:
    from ragflow.persistence import describe_state
    from ragflow.store.generations import read_pointer

    if state_dir.exists() and not state_dir.is_dir():
        raise ConfigError(f"--state-dir {state_dir} is not a directory")
    # the generation that serves (generation.json), not necessarily the root one after a migration
    pointer = read_pointer(state_dir)
    state = describe_state(state_dir / pointer.active, check_integrity=check, cache_dir=state_dir)
    state["generations"] = _generations(state_dir, pointer)
    if as_json:
        print(json.dumps(state, indent=2, ensure_ascii=False))
    elif not state["exists"]:
        print(f"state dir      {state_dir}  (no saved state)")
        cache = state["cache"]
        if cache["entries"]:
            print(f"cache          {cache['entries']:,} embeddings, {_bytes_text(cache['bytes'])}")
    else:
        _print_state(state)
    if not state["exists"]:
        say(
            f"no saved state in {state_dir}: `ragflow serve --state-dir {state_dir}` or `ragflow index "
            f"--state-dir {state_dir}` creates one"
        )
        return EXIT_FAILURE
    if state["problem"] is not None:
        say(
            f"the state in {state_dir} cannot be read: {state['problem']}. The next start moves it aside and "
            "rebuilds the index from the sources and the embedding cache"
        )
        return EXIT_FAILURE
    return EXIT_OK


def _generations(root: Path, pointer: Any) -> dict[str, Any]:
    """``generation.json``: the active generation, and the one a migration builds (with what it holds
    so far) and the one the last swap replaced, if any."""
    from ragflow.persistence import describe_state

    building = None
    if pointer.building is not None:
        found = describe_state(root / pointer.building, cache_dir=root)
        building = {
            "generation": pointer.building,
            **{key: found[key] for key in ("model_id", "dim", "parser_id", "documents", "chunks")},
        }
    return {"active": pointer.active, "building": building, "previous": pointer.previous}


def _print_state(state: dict[str, Any]) -> None:
    print(f"state dir        {state['state_dir']}  (format {state['format_version']})")
    generations = state["generations"]
    if generations["active"] != "." or generations["building"] or generations["previous"]:
        print(f"generation       {generations['active']} (generation.json)")
    building = generations["building"]
    if building is not None:
        print(
            f"migrating to     {building['generation']}: {building['model_id']} ({building['dim']} "
            f"dimensions), {building['documents']:,} documents and {building['chunks']:,} chunks so far"
        )
    if generations["previous"]:
        print(f"previous         {generations['previous']} (kept for a rollback)")
    print(f"embedding model  {state['model_id']} ({state['dim']} dimensions)")
    print(f"parser/splitter  {state['parser_id']}")
    print(f"documents        {state['documents']:,}")
    print(f"chunks           {state['chunks']:,}")
    last = state["last_checkpoint"]
    if last is None:
        print("last checkpoint  none")
    else:
        print(f"last checkpoint  {_when(last['time'])}, epoch {last['epoch']} ({state['checkpoints']} kept)")
    print(f"state size       {_bytes_text(state['state_bytes'])}")
    cache = state["cache"]
    entries = f"{cache['entries']:,}" if cache["entries"] is not None else "unreadable"
    print(f"embedding cache  {entries} embeddings, {_bytes_text(cache['bytes'])}")
    print("sources" if state["sources"] else "sources          none saved")
    for name, source in sorted(state["sources"].items()):
        if source.get("scope") == "stream":
            where = f"position {source.get('position')}"
        else:
            where = f"{source.get('positions', 0):,} file positions"
        print(f"  {name:<14} {source['documents']:,} documents, {source['chunks']:,} chunks, {where}")


def _when(timestamp: Any) -> str:
    if not isinstance(timestamp, int | float):
        return "never"
    ago = max(0.0, time.time() - timestamp)
    if ago < 120:
        age = f"{ago:.0f} s ago"
    elif ago < 7200:
        age = f"{ago / 60:.0f} min ago"
    else:
        age = f"{ago / 3600:.1f} h ago"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(timestamp))} ({age})"
