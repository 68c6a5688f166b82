"""``ragflow bench load``: maps the options onto ``ragflow.bench._load`` and prints its table (and a JSON file
of the numbers with ``--json``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragflow.cli._client import API_KEY_ENV
from ragflow.cli._errors import EXIT_FAILURE, EXIT_OK
from ragflow.cli._output import say
from ragflow.errors import ConfigError

DESCRIPTION = """\
Start the server (--server-cmd; {folder}, {port}, {state} are filled in) over a fresh folder of --docs
documents, then run --clients clients for --seconds with a --mix of retrievals, answers and uploads while a
document of the folder is rewritten every --edit-interval seconds; print throughput, p50/p95/p99, errors,
requests shed (503), /healthz latency, the server's memory and open files, and the seconds until the last
edit was found. Several --clients (1,16,256) and several --server-cmd run one after the other, each on a
fresh server: the first is the baseline of the others. --burst N drops N small files into the folder during
the run and follows their indexing; --soak checks memory growth after warm-up (<= 10%) and open files."""


def add_load_arguments(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = benches.add_parser(
        "load",
        help="many clients at once: throughput, latency percentiles, shedding, memory",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument(
        "--server-cmd",
        action="append",
        metavar="CMD",
        help="the server to start (repeat to compare; default: "
        "'ragflow serve {folder} --port {port} --state-dir {state}')",
    )
    load.add_argument("--clients", default="16", help="clients at once, comma-separated runs (default: 16)")
    load.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run (default: 60)")
    load.add_argument("--docs", type=int, default=24, help="documents in the folder (default: 24)")
    load.add_argument(
        "--mix",
        default="retrieve=1",
        help="operations and their weights, e.g. retrieve=8,answer=1,upload=1 (default: retrieve=1)",
    )
    load.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests per second of all clients together (default 0: each client sends its next request "
        "as soon as the last is answered)",
    )
    load.add_argument("--edit-interval", type=float, default=0.5, help="seconds between edits (0: none)")
    load.add_argument("--burst", type=int, default=0, help="small files dropped into the folder at once")
    load.add_argument("--soak", action="store_true", help="check memory and open files after warm-up")
    load.add_argument("--api-key", help=f"the server's API key (default: ${API_KEY_ENV})")
    load.add_argument("--server-log", type=Path, help="append the server's output to this file")
    load.add_argument("--json", type=Path, metavar="FILE", help="write the numbers of every run to FILE")


def run_load_command(args: argparse.Namespace) -> int:
    import os

    from ragflow.bench._load import DEFAULT_SERVER_CMD, OPERATIONS, LoadOptions, load_table, run_load

    try:
        clients = [int(c) for c in args.clients.split(",") if c.strip()]
        mix = tuple((op.strip(), float(weight)) for op, weight in (p.split("=") for p in args.mix.split(",")))
    except ValueError:
        raise ConfigError(
            f"--clients is N[,N...] and --mix OP=WEIGHT[,...]; got {args.clients!r}, {args.mix!r}"
        ) from None
    unknown = [op for op, _ in mix if op not in OPERATIONS]
    if unknown or not clients or min(clients) < 0:
        raise ConfigError(
            f"--mix operations are {', '.join(OPERATIONS)}; --clients at least 0 (got {unknown})"
        )
    commands = args.server_cmd or [DEFAULT_SERVER_CMD]
    results = []
    for number, command in enumerate(commands, 1):
        for count in clients:
            label = f"{count} clients" + (f", server {number}" if len(commands) > 1 else "")
            options = LoadOptions(
                server_cmd=command,
                clients=count,
                seconds=args.seconds,
                docs=args.docs,
                mix=mix,
                edit_interval=args.edit_interval,
                rate=args.rate,
                burst=args.burst,
                soak=args.soak,
                api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                label=label,
                server_log=args.server_log,
            )
            results.append(run_load(options))
            say(load_table(results[-1:]))
    print(load_table(results))
    if args.json:
        rows = [r.summary() | ({"timeline": r.timeline()} if args.soak else {}) for r in results]
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
        say(f"numbers written to {args.json}")
    if args.soak:
        verdicts = [r.soak_verdict() for r in results]
        for result, (ok, why) in zip(results, verdicts, strict=True):
            say(f"soak {result.label}: {'ok' if ok else 'FAILED'}: {why}")
        return EXIT_OK if all(ok for ok, _ in verdicts) else EXIT_FAILURE
    return EXIT_OK
