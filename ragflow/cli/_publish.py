"""``ragflow publish``: send files to a Kafka topic as ``raw`` messages keyed by path (and tombstones for
``--delete``), so a folder can feed a Kafka source without writing code."""

from __future__ import annotations

import argparse
import mimetypes
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragflow.cli._errors import EXIT_OK, CommandError
from ragflow.cli._output import say
from ragflow.errors import ConfigError

HELP = "send files to a Kafka topic as documents (raw messages keyed by path); --delete sends tombstones"
DESCRIPTION = (
    "Send each FILE, and each file under each DIRECTORY, to --topic as one message: the key is the path "
    "(relative to the directory given, or as given for a file), the value the file's bytes, with "
    "'content-type' and 'path' headers. A Kafka source with format: raw indexes them as documents "
    "kafka://<topic>/<key>. --delete KEY sends a tombstone, which deletes that document. Needs the "
    "'kafka' extra (pip install 'ragflow[kafka]')."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``publish``'s options."""
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files or directories to send")
    add_producer_arguments(parser)
    parser.add_argument(
        "--delete", action="append", default=[], metavar="KEY", help="send a tombstone for KEY (repeatable)"
    )
    parser.add_argument(
        "--include-hidden", action="store_true", help="also send files whose name starts with ."
    )


def add_producer_arguments(parser: argparse.ArgumentParser) -> None:
    """``--topic``, ``--bootstrap-servers`` and ``-X`` settings: where messages go (publish, feed)."""
    parser.add_argument("--topic", required=True, help="the topic to send to")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("RAGFLOW_KAFKA_BOOTSTRAP", "localhost:9092"),
        help="brokers, host:port[,...] (default: $RAGFLOW_KAFKA_BOOTSTRAP or localhost:9092)",
    )
    parser.add_argument(
        "-X",
        dest="settings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a librdkafka producer setting (SASL, TLS, message.max.bytes...), repeatable",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow publish`` and return its exit code."""
    if not args.paths and not args.delete:
        raise ConfigError("nothing to publish: give files or directories, or --delete KEY")
    settings = _settings(args.settings)
    files = list(_files([Path(p) for p in args.paths], args.include_hidden))
    producer = _producer({**settings, "bootstrap.servers": args.bootstrap_servers})
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            key = message.key().decode("utf-8", "replace") if message.key() else "?"
            failures.append(f"{key}: {error.str()}")

    sent_bytes = 0
    for key, path in files:
        data = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {"content-type": content_type, "path": key}
        _produce(producer, args.topic, key, data, headers, delivered, failures)
        sent_bytes += len(data)
    for key in args.delete:
        _produce(producer, args.topic, key, None, {}, delivered, failures)
    left = producer.flush(30)
    if left:
        failures.append(f"{left} messages were not delivered within 30 s (is {args.bootstrap_servers} up?)")
    if failures:
        raise CommandError(f"{len(failures)} messages failed: " + "; ".join(failures[:10]))
    deletes = len(args.delete)
    say(f"published {len(files)} documents ({sent_bytes} bytes) and {deletes} deletes to {args.topic}")
    return EXIT_OK


def _files(paths: list[Path], include_hidden: bool) -> Iterator[tuple[str, Path]]:
    """``(key, path)`` of every file to send, in a stable order."""
    for path in paths:
        if path.is_file():
            yield path.as_posix().removeprefix("./"), path
        elif path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = found.relative_to(path)
                if include_hidden or not any(part.startswith(".") for part in relative.parts):
                    yield relative.as_posix(), found
        else:
            raise ConfigError(f"{path}: no such file or directory")


def _settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ConfigError(f"-X takes NAME=VALUE (a librdkafka setting), got {pair!r}")
        settings[name.strip()] = value.strip()
    return settings


def _producer(settings: dict[str, str]) -> Any:
    try:
        from confluent_kafka import KafkaException, Producer
    except ImportError:
        raise ConfigError("ragflow publish needs confluent-kafka: pip install 'ragflow[kafka]'") from None
    try:
        return Producer({"linger.ms": 5, **settings})
    except KafkaException as exc:
        raise ConfigError(f"bad producer settings: {exc}") from None


def _produce(
    producer: Any,
    topic: str,
    key: str,
    value: bytes | None,
    headers: dict[str, str],
    delivered: Any,
    failures: list[str],
) -> None:
    try:
        producer.produce(topic, value=value, key=key.encode(), headers=headers, on_delivery=delivered)
    except BufferError:  # the local queue is full: let it drain, then try once more
        producer.flush(30)
        producer.produce(topic, value=value, key=key.encode(), headers=headers, on_delivery=delivered)
    except Exception as exc:  # too large, unknown topic...
        failures.append(f"{key}: {exc}")
    producer.poll(0)
