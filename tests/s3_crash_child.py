"""A ``DocumentStore`` over an S3 bucket in a process of its own, for the S3 crash test
(tests/connectors/test_s3_crash.py): the test changes the bucket, kills this process with SIGKILL at
random moments and starts it again.

    python -m tests.s3_crash_child ENDPOINT BUCKET STATE_DIR [--interval S] [--sqs QUEUE_URL]
                                   [--hold-checkpoints] [--dump]

Prints ``ready`` once the store is fresh and checkpointed, then keeps syncing (polling every 0.05 s, or
with ``--sqs`` from the bucket's notifications in that queue) until killed. With ``--hold-checkpoints``
no checkpoint is written after ``ready`` (each write blocks), and each epoch prints ``epoch N``, its
input changes: a kill then lands between a change's apply and its checkpoint. With ``--dump`` it prints
one JSON line once fresh instead (the index contents, the keys this process downloaded and the texts it
embedded) and stops cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any

from ragflow.connectors.s3 import S3Source
from ragflow.connectors.s3.bucket import Bucket
from ragflow.persistence import CheckpointBatch, CheckpointInfo, StateFile
from ragflow.store import DocumentStore
from tests.crash_harness import say
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.servers.s3 import ACCESS_KEY, SECRET_KEY
from tests.test_store import index_contents

_DOWNLOADED: list[str] = []


def record_downloads() -> None:
    """Remember every key this process GETs (the test asserts that unchanged objects are not read)."""
    fetch = Bucket.fetch

    def recording_fetch(self: Bucket, key: str, *args: Any) -> Any:
        _DOWNLOADED.append(key)
        return fetch(self, key, *args)

    Bucket.fetch = recording_fetch


def hold_checkpoints() -> None:
    """Make every checkpoint write from now on block forever (until the process is killed)."""

    def blocked_write(self: StateFile, batch: CheckpointBatch) -> CheckpointInfo:
        threading.Event().wait()
        raise AssertionError("unreachable: the process is killed while the write waits")

    StateFile.write = blocked_write  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("endpoint")
    parser.add_argument("bucket")
    parser.add_argument("state_dir")
    parser.add_argument("--interval", type=float, default=0.2, help="checkpoint_interval in seconds")
    parser.add_argument("--sqs", help="the queue of the bucket's notifications (reconcile every 300 s)")
    parser.add_argument("--hold-checkpoints", action="store_true")
    parser.add_argument("--dump", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    record_downloads()
    source = S3Source(
        args.bucket,
        endpoint_url=args.endpoint,
        region="us-east-1",
        addressing_style="path",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        poll_interval=0.05,
        notifications={"sqs_queue_url": args.sqs} if args.sqs else None,
        reconcile_interval=300,
    )
    embedder = HashingEmbedder()
    store = DocumentStore(
        source,
        embedder=embedder,
        state_dir=args.state_dir,
        checkpoint_interval=args.interval,
        max_epoch_documents=8,
    )
    store.start()
    if not store.wait_until_fresh(60):
        say(f"not fresh after 60 s: {store.engine.failure!r}")
        return 1
    while (store.persistence_stats() or {}).get("pending_documents"):
        time.sleep(0.02)  # "ready" promises that the snapshot is in a checkpoint
    if args.dump:
        result = {"contents": index_contents(store), "downloaded": _DOWNLOADED, "embedded": embedder.embedded}
        store.stop()
        say(json.dumps(result))
        return 0
    if args.hold_checkpoints:
        hold_checkpoints()
        store.on_update(lambda report: say(f"epoch {report.input_changes}"))
    say("ready")
    threading.Event().wait()  # until killed
    return 0


if __name__ == "__main__":
    sys.exit(main())
