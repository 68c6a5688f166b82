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
from ragflow.errors import ConfigError

HELP = "show or control a running server's migration to new index settings (status, abort, rollback, start)"
DESCRIPTION = (
    "When the configuration changes what the index holds (embedding model, dimension, splitter, parser), "
    "'ragflow serve' builds the new index beside the serving one and swaps them in one step. "
    "'status' shows the migration's progress, rate and ETA; 'abort' stops it and deletes the new "
    "generation; 'rollback' swaps back to the previous generation while it is kept "
    "(persistence.keep_previous_generation); 'start' migrates again after an abort or a rollback, and "
    "'start --force' swaps a migration the evaluation gate (persistence.migration_gate) holds. "
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="with start: swap even if the new generation scores lower on the evaluation gate's questions",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow migrate`` and return its exit code."""
    client = Client(args.url, args.api_key, args.timeout)
    if args.force and args.action != "start":
        raise ConfigError("--force goes with 'ragflow migrate start'")
    if args.action == "status":
        status = client.get("/v1/migration")
    else:
        status = client.post(f"/v1/migration/{args.action}", {"force": True} if args.force else {})
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
    lines.extend(gate_lines(status))
    if status.get("previous"):
        until = _when(status.get("rollback_until"))
        lines.append(f"  previous     {status['previous']} (rollback possible until {until})")
    if status.get("message"):
        lines.append(f"  {status['message']}")
    return lines


def progress_lines(status: dict[str, Any]) -> list[str]:
    """The progress, rate and ETA of a migration (``ragflow status`` shows them too)."""
    if status.get("state") not in ("building", "catching_up", "held"):
        return []
    done, total = status.get("documents_done") or 0, status.get("documents_total") or 0
    rate, eta = status.get("rate_documents_per_second"), status.get("eta_seconds")
    return [
        f"  progress     {done:,} of {total:,} documents, {status.get('chunks_done') or 0:,} chunks",
        f"  rate         {f'{rate:,.1f} documents/s' if rate is not None else 'measuring'}"
        + (f", ETA {eta:,.0f} s" if eta is not None else ""),
    ]


def gate_lines(status: dict[str, Any]) -> list[str]:
    """The evaluation gate's scores: the serving generation's and the new one's."""
    gate = status.get("gate")
    if not gate:
        return []
    metric = gate.get("metric", "?")
    if gate.get("passed") is None:
        verdict = "not evaluated yet (once the new generation has caught up)"
    else:
        verdict = (
            f"{metric} {gate.get('new_score', 0):.4f} (new) vs {gate.get('active_score', 0):.4f} "
            f"(serving) on {gate.get('questions', 0)} questions: "
            + (
                "passed"
                if gate["passed"]
                else "HOLDING the swap (ragflow migrate start --force swaps anyway)"
            )
        )
    if gate.get("forced"):
        verdict += "; overridden (--force)"
    return [f"  gate         {verdict}"]


def _identity(meta: dict[str, Any]) -> str:
    return f"{meta.get('model_id')} ({meta.get('dim')}-d), {meta.get('parser_id')}"


def _when(seconds: float | None) -> str:
    if not seconds:
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
