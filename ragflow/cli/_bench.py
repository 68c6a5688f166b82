"""``ragflow bench freshness``: how long a change at the source takes to show in a server's answers,
measured through the REST API, against ragflow or any server with the same API; and ``--compare`` of saved
runs. The driver is ``ragflow.bench``; this module only maps options onto it and writes the outputs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ragflow.cli._bench_load import add_load_arguments, run_load_command
from ragflow.cli._client import API_KEY_ENV
from ragflow.cli._errors import EXIT_OK
from ragflow.cli._output import say
from ragflow.errors import ConfigError

if TYPE_CHECKING:
    from ragflow.bench import FreshnessOptions

HELP = "benchmark a live index: freshness of changes through the REST API, cost at a growing index, load"
DESCRIPTION = "Benchmarks of a live index, run against ragflow or any server with the same REST API."

FRESHNESS_DESCRIPTION = """\
Write documents and then timed changes (create, edit of one paragraph, whole rewrite, append, rename,
delete; one at a time after random idle gaps, then a burst) into the source the server under test
indexes (a folder, an S3 bucket or a Kafka topic), and measure, through /v1/retrieve, /v1/statistics and
/v1/inputs only, how long each takes to show in its answers. Start the server with --server-cmd
({folder}, {port}, {state}, {bucket}, {endpoint}, {topic}, {bootstrap} are filled in, and given to it as
RAGFLOW_BENCH_<NAME> variables; start-up, restart, memory and CPU are measured too) or attach to a
running one with --url. With --compare, no run: the saved runs are put side by side."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench``'s subcommands and their options."""
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    fresh = benches.add_parser(
        "freshness",
        help="time from a change at the source to the first answer that shows it",
        description=FRESHNESS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server = fresh.add_argument_group("the server under test (one of)")
    server.add_argument("--url", help="a running server, e.g. http://127.0.0.1:8000 (needs --folder)")
    server.add_argument(
        "--server-cmd",
        metavar="CMD",
        help="start the server with this command, e.g. 'ragflow serve {folder} --port {port} "
        "--state-dir {state}'",
    )
    source = fresh.add_argument_group("the source the server indexes, where the run writes")
    source.add_argument(
        "--source", choices=["folder", "s3", "kafka"], default="folder", help="default: folder"
    )
    source.add_argument(
        "--folder",
        type=Path,
        help="the folder the server indexes (the run writes into a subfolder of it and removes it after; "
        "default with --server-cmd: a temporary folder)",
    )
    source.add_argument(
        "--s3-bucket", help="the bucket the server indexes (credentials: the AWS_* variables)"
    )
    source.add_argument("--s3-endpoint", help="an S3-compatible server's URL (default: AWS)")
    source.add_argument("--s3-prefix", default="", help="write under this key prefix of the bucket")
    source.add_argument("--kafka-bootstrap", metavar="HOST:PORT", help="the Kafka broker")
    source.add_argument("--kafka-topic", help="the topic the server consumes (keyed raw messages)")
    server.add_argument("--api-key", help=f"the server's API key (default: ${API_KEY_ENV})")
    server.add_argument("--server-log", type=Path, help="append the started server's output to this file")
    work = fresh.add_argument_group("workload")
    work.add_argument("--docs", type=int, default=100, help="documents written first (default: 100)")
    work.add_argument("--changes", type=int, default=20, help="timed changes of each kind (default: 20)")
    work.add_argument(
        "--kinds",
        default="create,edit,rewrite,append,rename,delete",
        help="which kinds of change, comma-separated (default: all six)",
    )
    work.add_argument("--burst", type=int, default=100, help="edits written at once at the end (0: none)")
    work.add_argument(
        "--restart",
        type=int,
        default=0,
        metavar="EDITS",
        help="with --server-cmd: stop the server, make EDITS edits, start it again (default: 0, no test)",
    )
    work.add_argument("--seed", type=int, default=0, help="seed of the generated text and choices")
    work.add_argument("--corpus", type=Path, help="take the documents' text from the .txt/.md files here")
    work.add_argument("--gap", default="0.2,1.0", help="idle seconds before each change, MIN,MAX")
    measure = fresh.add_argument_group("measuring")
    measure.add_argument(
        "--poll-interval", type=float, default=0.01, help="least seconds between polls (default: 0.01)"
    )
    measure.add_argument("--timeout", type=float, default=60.0, help="seconds before a change is a timeout")
    measure.add_argument("--k", type=int, default=50, help="chunks a poll asks for (default: 50)")
    measure.add_argument("--label", help="the run's name in tables and reports")
    out = fresh.add_argument_group("output")
    out.add_argument("--json", type=Path, metavar="FILE", help="write every record to FILE")
    out.add_argument("--report", type=Path, metavar="FILE", help="write a self-contained HTML report")
    out.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="RUN.json",
        help="do not run: put these saved runs side by side (with --report, in one page)",
    )

    scale = benches.add_parser(
        "scale",
        help="one change's cost at a growing index (in process, fast embedder)",
        description="Build indexes of growing size in this process with a fast deterministic embedder, and "
        "time one-paragraph edits and deletes from the write to searchable at each, with the memory per "
        "chunk and the restart time to ready: the curve must stay flat.",
    )
    scale.add_argument(
        "--chunks", default="1000,10000,100000", help="index sizes, comma-separated (default: 1k, 10k, 100k)"
    )
    scale.add_argument("--changes", type=int, default=20, help="edits, then deletes, timed at each size")
    scale.add_argument("--json", type=Path, metavar="FILE", help="write the rows to FILE")
    add_load_arguments(benches)


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow bench ...`` and return its exit code."""
    if args.bench == "scale":
        return _run_scale(args)
    if args.bench == "load":
        return run_load_command(args)
    from ragflow.bench import FreshnessResult, freshness_table, html_report, run_freshness

    if args.compare:
        results = [FreshnessResult.load(path) for path in args.compare]
    else:
        results = [run_freshness(_options(args))]
        if args.json:
            results[0].save(args.json)
            say(f"records written to {args.json}")
    print(freshness_table(results))
    if args.report:
        args.report.write_text(html_report(results), encoding="utf-8")
        say(f"report written to {args.report}")
    return EXIT_OK


def _options(args: argparse.Namespace) -> FreshnessOptions:
    from ragflow.bench import FreshnessOptions
    from ragflow.bench._workload import parse_kinds

    if (args.url is None) == (args.server_cmd is None):
        raise ConfigError("give --server-cmd (start the server) or --url (attach to a running one)")
    if args.url and args.source == "folder" and args.folder is None:
        raise ConfigError("--url needs --folder: the folder that server indexes, where the run writes")
    if args.source == "s3" and not args.s3_bucket:
        raise ConfigError("--source s3 needs --s3-bucket (and --s3-endpoint for a server other than AWS)")
    if args.source == "kafka" and not (args.kafka_bootstrap and args.kafka_topic):
        raise ConfigError("--source kafka needs --kafka-bootstrap HOST:PORT and --kafka-topic")
    if args.restart and not args.server_cmd:
        raise ConfigError("--restart needs --server-cmd: the benchmark must be able to restart the server")
    kinds = parse_kinds(args.kinds)
    try:
        low, high = (float(x) for x in args.gap.split(","))
    except ValueError:
        raise ConfigError(f"--gap is MIN,MAX in seconds, e.g. 0.2,1.0; got {args.gap!r}") from None
    for name in ("docs", "changes", "burst", "restart", "k"):
        if getattr(args, name) < (1 if name in ("docs", "k") else 0):
            raise ConfigError(f"--{name} must be at least {1 if name in ('docs', 'k') else 0}")
    return FreshnessOptions(
        url=args.url,
        server_cmd=args.server_cmd,
        source=args.source,
        folder=args.folder,
        s3_endpoint=args.s3_endpoint,
        s3_bucket=args.s3_bucket,
        s3_prefix=args.s3_prefix,
        kafka_bootstrap=args.kafka_bootstrap,
        kafka_topic=args.kafka_topic,
        docs=args.docs,
        changes=args.changes,
        kinds=kinds,
        burst=args.burst,
        restart=args.restart,
        seed=args.seed,
        corpus=args.corpus,
        gap=(low, high),
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        k=args.k,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        label=args.label,
        server_log=args.server_log,
        progress=say,
    )


def _run_scale(args: argparse.Namespace) -> int:
    import json

    from ragflow.bench import ScaleOptions, run_scale, scale_table

    try:
        sizes = [int(x) for x in args.chunks.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--chunks is a comma-separated list of sizes, got {args.chunks!r}") from None
    if not sizes or min(sizes) < 10 or args.changes < 1:
        raise ConfigError("--chunks sizes must be at least 10 and --changes at least 1")
    rows = run_scale(ScaleOptions(sizes=sizes, changes=args.changes, progress=say))
    print(scale_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        say(f"rows written to {args.json}")
    return EXIT_OK
