"""The freshness benchmark over the Kafka and S3 sources, with ragflow's default local model: starts a
Kafka-protocol broker (tansu) or an S3 server that delivers bucket notifications to an SQS queue
(moto's server), points ``ragflow serve --config`` at it, and runs ``ragflow bench freshness`` against it.

    python -m apps.freshness_bench.sources --source kafka|s3 [--out DIR] [--docs 100] [--changes 20]
                                           [--burst 100] [--kinds create,edit,...] [--seed 0]

The brokers are the test suite's (``tests/servers``), so this runs wherever the tests do, offline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ragflow.bench import FreshnessOptions, FreshnessResult, freshness_table, run_freshness
from ragflow.bench._workload import ALL_KINDS, parse_kinds
from ragflow.cli._output import say
from tests.servers.kafka import CONSUMER_SETTINGS, KafkaBroker, free_port
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY, MotoServer


def serve_command(config: Path) -> str:
    return (
        f"{sys.executable} -m ragflow.cli serve --config {config} --port {{port}} --state-dir {{state}} "
        "--log-level warning"
    )


def run(args: argparse.Namespace, source: dict[str, Any], options: dict[str, Any], work: Path) -> None:
    config = work / "ragflow.yaml"
    config.write_text(yaml.safe_dump({"sources": [source]}), encoding="utf-8")
    result = run_freshness(
        FreshnessOptions(
            server_cmd=serve_command(config),
            source=args.source,
            docs=args.docs,
            changes=args.changes,
            kinds=args.kinds,
            burst=args.burst,
            seed=args.seed,
            label=f"ragflow ({args.source}, all-MiniLM-L6-v2)",
            server_log=args.out / f"ragflow-{args.source}-server.log",
            timeout=120.0,
            progress=say,
            **options,
        )
    )
    result.save(args.out / f"ragflow-{args.source}.json")
    print(freshness_table([FreshnessResult.load(args.out / f"ragflow-{args.source}.json")]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", choices=("kafka", "s3"), required=True)
    parser.add_argument("--out", type=Path, default=Path("freshness-results"), help="where the files go")
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--changes", type=int, default=20, help="timed changes of each kind")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--kinds", default=",".join(ALL_KINDS), help="which kinds of change")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.kinds = parse_kinds(args.kinds)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ragflow-freshness-") as tmp:
        work = Path(tmp)
        if args.source == "kafka":
            broker = KafkaBroker(free_port())
            broker.start()
            try:
                topic = broker.create_topic(partitions=1)
                source = {
                    "kind": "kafka",
                    "topics": [topic],
                    "bootstrap_servers": broker.bootstrap,
                    "consumer": CONSUMER_SETTINGS,
                }
                say(f"== tansu at {broker.bootstrap}, topic {topic}")
                run(args, source, {"kafka_bootstrap": broker.bootstrap, "kafka_topic": topic}, work)
            finally:
                broker.stop()
        else:
            os.environ.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            moto = MotoServer()
            moto.start()
            try:
                bucket, queue = moto.notified_bucket()
                source = {
                    "kind": "s3",
                    "bucket": bucket,
                    "endpoint_url": moto.endpoint,
                    "addressing_style": "path",
                    "notifications": {"sqs_queue_url": queue},
                }
                say(f"== moto at {moto.endpoint}, bucket {bucket} notifying {queue}")
                run(args, source, {"s3_endpoint": moto.endpoint, "s3_bucket": bucket}, work)
            finally:
                moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
