"""A ``DocumentStore`` over a folder in a process of its own, for the crash tests in test_persistence.py:
the test changes the folder, kills this process with SIGKILL at chosen moments and starts it again.

    python -m tests.crash_harness FOLDER STATE_DIR [--interval S] [--slow-checkpoint S] [--dump]

Prints ``ready`` once the store is fresh. With ``--slow-checkpoint S`` every checkpoint transaction takes
``S`` seconds more, between ``checkpoint-begin`` and ``checkpoint-end`` lines, so that a kill can land in
the middle of one. With ``--dump`` it prints one JSON line once fresh (the index contents as
``tests.test_store.index_contents`` lists them, the index count, the texts this process embedded and how
many documents it parsed), then stops cleanly.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import sys
import threading
import time
from typing import Any

from connectors.folder import FolderSource
from ragflow.persistence import StateFile
from ragflow.store import DocumentStore
from tests.fakes.hashing_embedder import HashingEmbedder
from tests.test_store import index_contents

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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.slow_checkpoint:
        slow_down_checkpoints(args.slow_checkpoint)
    embedder = HashingEmbedder()
    store = DocumentStore(
        FolderSource(args.folder, reconcile_interval=None),
        embedder=embedder,
        state_dir=args.state_dir,
        checkpoint_interval=args.interval,
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
    threading.Event().wait()  # until killed
    return 0


if __name__ == "__main__":
    sys.exit(main())
