"""``ragflow feed``: read the configured folder or S3 sources and publish each document change to a Kafka
topic keyed by document id (a tombstone for a delete), so that ``ragflow worker`` processes index it.
A document always goes to the same partition, so exactly one worker owns it at a time."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import mimetypes
import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ragflow.cli._config_options import add_config_arguments, config_from
from ragflow.cli._errors import EXIT_OK, CommandError
from ragflow.cli._output import add_log_level_argument, configure_logging, say
from ragflow.cli._publish import _produce, _producer, _settings, add_producer_arguments
from ragflow.errors import ConfigError
from ragflow.sources import ChangeKind, DocumentChange

log = logging.getLogger("ragflow.feed")

HELP = "publish the configured folder or S3 sources' documents to a Kafka topic, keyed by document id"
DESCRIPTION = (
    "Read the configured sources (folder, s3) as 'ragflow serve' would, and send each change to --topic: "
    "an upsert as a raw message (key: the document id, value: its bytes, with 'content-type' and 'path' "
    "headers), a delete as a tombstone. The sources' positions are saved under the state directory once "
    "the broker has acknowledged every message before them, so a restart sends only what changed since "
    "(at least once: a crash may send a change again, which workers apply idempotently). With --once it "
    "sends the current state and stops; otherwise it follows changes until SIGTERM or Ctrl-C."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``feed``'s options."""
    add_config_arguments(parser)
    add_producer_arguments(parser)
    parser.add_argument("--once", action="store_true", help="send the current state, then stop")
    add_log_level_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow feed`` and return its exit code."""
    configure_logging(args.log_level)
    config = config_from(args)
    sources = config.build_sources()
    if not sources or any(getattr(s, "position_scope", "document") != "document" for s in sources):
        raise ConfigError("ragflow feed reads folder or s3 sources (kind: folder, kind: s3), at least one")
    state_dir = Path(config.persistence.state_dir or ".ragflow")
    state_dir.mkdir(parents=True, exist_ok=True)
    producer = _producer({**_settings(args.settings), "bootstrap.servers": args.bootstrap_servers})
    stop = threading.Event()

    def interrupt(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, interrupt)
    feeds = [
        _Feed(source, producer, args.topic, state_dir / _positions_name(source.name)) for source in sources
    ]
    threads = [
        threading.Thread(target=feed.run, args=(stop, "static" if args.once else "streaming"), daemon=True)
        for feed in feeds
    ]
    say(f"feeding {', '.join(s.name for s in sources)} -> {args.topic} at {args.bootstrap_servers}")
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [feed.failure for feed in feeds if feed.failure is not None]
    if failed:
        raise CommandError(f"feed failed: {failed[0]}")
    say(
        f"sent {sum(f.sent for f in feeds)} changes ({sum(f.deleted for f in feeds)} deletes) to {args.topic}"
    )
    return EXIT_OK


class _Feed:
    """One source's changes sent to the topic; its positions saved after the broker acknowledged them."""

    def __init__(self, source: Any, producer: Any, topic: str, positions_file: Path) -> None:
        self.source, self.producer, self.topic = source, producer, topic
        self.positions_file = positions_file
        self.positions: dict[str, Any] = _read_positions(positions_file)
        self.sent = self.deleted = 0
        self.failure: str | None = None

    def run(self, stop: threading.Event, mode: Any) -> None:
        try:
            self.source.run(self._emit, stop, mode, dict(self.positions) or None)
        except Exception as exc:
            log.exception("source %r failed", self.source.name)
            self.failure = f"{self.source.name}: {type(exc).__name__}: {exc}"
            stop.set()

    def _emit(self, changes: Sequence[DocumentChange], snapshot_done: bool = False) -> None:
        failures: list[str] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(f"{message.key()!r}: {error.str()}")

        for change in changes:
            if change.kind is ChangeKind.DELETE:
                _produce(self.producer, self.topic, change.doc_id, None, {}, delivered, failures)
                self.positions.pop(change.doc_id, None)
                self.deleted += 1
            elif change.error is not None or change.data is None:
                log.warning("not sent: %s: %s", change.doc_id, change.error)
                continue
            else:
                path = str(change.metadata.get("path") or change.doc_id)
                headers = {
                    "content-type": mimetypes.guess_type(path)[0] or "application/octet-stream",
                    "path": change.doc_id,
                }
                _produce(self.producer, self.topic, change.doc_id, change.data, headers, delivered, failures)
                self.positions[change.doc_id] = change.position
            self.sent += 1
        left = self.producer.flush(60)
        if left or failures:
            # positions stay as saved: a restart sends these changes again (at least once)
            raise CommandError(f"{left} messages undelivered, {len(failures)} failed: {failures[:3]}")
        _write_positions(self.positions_file, self.positions)


def _positions_name(source: str) -> str:
    """The file of a source's positions (a source's name may hold a path: ``folder:/srv/docs``)."""
    return f"feed-{hashlib.blake2b(source.encode(), digest_size=8).hexdigest()}.json"


def _read_positions(path: Path) -> dict[str, Any]:
    try:
        positions: dict[str, Any] = json.loads(path.read_text())
        return positions
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s): sending every document again", path, exc)
        return {}


def _write_positions(path: Path, positions: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as out:
        json.dump(positions, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
