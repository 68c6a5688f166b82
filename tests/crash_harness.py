"""A ``DocumentStore`` over a folder in a process of its own, for the crash tests in test_persistence.py:
the test changes the folder, kills this process with SIGKILL at chosen moments and starts it again.

    python -m tests.crash_harness FOLDER STATE_DIR [--interval S] [--slow-checkpoint S] [--dump]
                                  [--uploads DIR [--upload-seed N]]

Prints ``ready`` once the store is fresh. With ``--slow-checkpoint S`` every checkpoint transaction takes
``S`` seconds more, between ``checkpoint-begin`` and ``checkpoint-end`` lines, so that a kill can land in
the middle of one. With ``--dump`` it prints one JSON line once fresh (the index contents as
``tests.test_store.index_contents`` lists them, the index count, the texts this process embedded and how
many documents it parsed), then stops cleanly. With ``--uploads DIR`` an upload source (documents kept in
``DIR``) joins the folder; with ``--upload-seed N`` the process itself puts and deletes uploads at random
once ready, so that a kill lands among them.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import random
import sys
import threading
import time
from typing import Any

from ragflow.connectors.folder import FolderSource
from ragflow.connectors.upload import UploadSource
from ragflow.persistence import StateFile
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.test_store import index_contents, paragraph

_SAY = threading.Lock()


def say(line: str) -> None:
    """Print one whole line: the checkpoint thread and the main thread both talk, and ``print`` writes
    the text and its newline separately (two lines could run together)."""
    with _SAY:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def slow_down_checkpoints(seconds: float) -> None:
    """Make each checkpoint hold its transaction open ``seconds`` longer, after writing its rows."""
    write_rows = StateFile._write_rows

    def slow_write_rows(self: StateFile, *args: Any) -> None:
        say("checkpoint-begin")
        write_rows(self, *args)
        time.sleep(seconds)
        say("checkpoint-end")

    StateFile._write_rows = slow_write_rows  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder")
    parser.add_argument("state_dir")
    parser.add_argument("--interval", type=float, default=1.0, help="checkpoint_interval in seconds")
    parser.add_argument("--slow-checkpoint", type=float, default=0.0)
    parser.add_argument("--dump", action="store_true")
    parser.add_argument("--max-epoch-documents", type=int, default=64)
    parser.add_argument("--uploads", help="also an upload source keeping its documents in this directory")
    parser.add_argument(
        "--upload-seed", type=int, help="once ready, put and delete uploads at random (seeded) until killed"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.slow_checkpoint:
        slow_down_checkpoints(args.slow_checkpoint)
    embedder = HashingEmbedder()
    uploads = UploadSource(directory=args.uploads) if args.uploads else None
    sources: list[Any] = [FolderSource(args.folder, reconcile_interval=None)]
    store = DocumentStore(
        [*sources, *([uploads] if uploads is not None else [])],
        embedder=embedder,
        state_dir=args.state_dir,
        checkpoint_interval=args.interval,
        max_epoch_documents=args.max_epoch_documents,
    )
    store.start()
    if not store.wait_until_fresh(60):
        say(f"not fresh after 60 s: {store.engine.failure!r}, {store.progress()}")
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        return 1
    if args.dump:
        result = {
            "contents": index_contents(store),
            "count": store.index.count(),
            "embedded": embedder.embedded,
            "parsed": store.pipeline.parsed.node.stats()["computed"],  # type: ignore[attr-defined]
        }
        store.stop()
        say(json.dumps(result))
        return 0
    say("ready")
    if uploads is not None and args.upload_seed is not None:
        drive_uploads(uploads, random.Random(args.upload_seed))
    threading.Event().wait()  # until killed
    return 0


def drive_uploads(uploads: UploadSource, rng: random.Random) -> None:
    """Put, replace and delete uploads from a pool of names, every few milliseconds, until killed."""
    while True:
        name = f"u{rng.randrange(8)}.md"
        if rng.random() < 0.3:
            uploads.delete(name)
        else:
            uploads.put(name, paragraph(rng).encode())
        time.sleep(rng.uniform(0, 0.03))


if __name__ == "__main__":
    sys.exit(main())
