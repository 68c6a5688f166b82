"""``ragflow migrate``: a running server's migration to new index settings (docs/persistence.md,
"Generations and migrations"): ``status`` shows its progress, ``abort`` drops the generation being built,
``rollback`` swaps back to the generation the last swap replaced, ``start`` migrates again after either."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ragflow.cli._client import Client, add_client_arguments
from ragflow.cli._errors import EXIT_OK

HELP = "show or control a running server's migration to new index settings (status, abort, rollback, start)"
DESCRIPTION = (
    "When the configuration changes what the index holds (embedding model, dimension, splitter, parser), "
    "'ragflow serve' builds the new index beside the serving one and swaps them in one step. "
    "'status' shows the migration's progress, rate and ETA; 'abort' stops it and deletes the new "
    "generation; 'rollback' swaps back to the previous generation while it is kept "
    "(persistence.keep_previous_generation); 'start' migrates again after an abort or a rollback. "
    "Needs an admin key where the server has keys."
)

ACTIONS = ("status", "abort", "rollback", "start")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``migrate``'s options."""
    parser.add_argument(
        "action", choices=ACTIONS, help="what to do (default: status)", nargs="?", default="status"
    )
    add_client_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the server's answer as JSON")


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow migrate`` and return its exit code."""
    client = Client(args.url, args.api_key, args.timeout)
    if args.action == "status":
        status = client.get("/v1/migration")
    else:
        status = client.post(f"/v1/migration/{args.action}", {})
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
    else:
        for line in describe(status):
            print(line)
    return EXIT_OK


def describe(status: dict[str, Any]) -> list[str]:
    """``status`` (``GET /v1/migration``) for people."""
    state = status.get("state", "none")
    lines = [f"active         {status.get('active', '?')}"]
    if state == "none":
        lines.append("migration      none: the active generation has the configured settings")
        return lines
    lines.append(
        f"migration      {state.replace('_', ' ')}" + (f": {status['error']}" if status.get("error") else "")
    )
    if status.get("from") and status.get("to"):
        lines.append(f"  from         {_identity(status['from'])}")
        lines.append(f"  to           {_identity(status['to'])}")
    if status.get("building"):
        lines.append(f"  building     {status['building']}")
    lines.extend(progress_lines(status))
    if status.get("previous"):
        until = _when(status.get("rollback_until"))
        lines.append(f"  previous     {status['previous']} (rollback possible until {until})")
    if status.get("message"):
        lines.append(f"  {status['message']}")
    return lines


def progress_lines(status: dict[str, Any]) -> list[str]:
    """The progress, rate and ETA of a migration (``ragflow status`` shows them too)."""
    if status.get("state") not in ("building", "catching_up"):
        return []
    done, total = status.get("documents_done") or 0, status.get("documents_total") or 0
    rate, eta = status.get("rate_documents_per_second"), status.get("eta_seconds")
    return [
        f"  progress     {done:,} of {total:,} documents, {status.get('chunks_done') or 0:,} chunks",
        f"  rate         {f'{rate:,.1f} documents/s' if rate is not None else 'measuring'}"
        + (f", ETA {eta:,.0f} s" if eta is not None else ""),
    ]


def _identity(meta: dict[str, Any]) -> str:
    return f"{meta.get('model_id')} ({meta.get('dim')}-d), {meta.get('parser_id')}"


def _when(seconds: float | None) -> str:
    if not seconds:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
