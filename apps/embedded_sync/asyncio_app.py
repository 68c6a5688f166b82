"""Keep a folder searchable from inside an asyncio application, offline: the embedded-sync example written
with ``async with``, ``await_until_fresh``, ``aretrieve`` and ``store.updates()``.

    python -m apps.embedded_sync.asyncio_app [FOLDER] [--state-dir DIR] [--query TEXT ...] [--once]

It shows progress while the folder is first indexed, then prints a line each time a change becomes
searchable (from ``store.updates()``) and answers queries typed on standard input, all on one event loop
that never blocks on the store. ``--once`` indexes, answers the ``--query`` arguments and exits.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from apps.embedded_sync.__main__ import hits_text, parse_args, progress_line
from ragflow.connectors.folder import FolderSource
from ragflow.store import DocumentStore


async def show_progress(store: DocumentStore) -> None:
    """A progress line on stderr every second until cancelled."""
    while True:
        print(progress_line(store.progress()), file=sys.stderr, flush=True)
        await asyncio.sleep(1)


async def announce_updates(store: DocumentStore) -> None:
    """A line per update that made changes searchable (and how many a slow terminal skipped)."""
    async for update in store.updates():
        skipped = f", {update.missed} updates skipped" if update.missed else ""
        lag = f" {update.lag * 1000:.0f} ms after the change" if update.lag is not None else ""
        print(
            f"[epoch {update.epoch}] indexed {list(update.indexed)} removed {list(update.removed)}"
            f"{lag}{skipped}"
        )
        for error in update.errors:
            print(f"  error in {error.doc_id}: {error.message}", file=sys.stderr)


async def answer(store: DocumentStore, query: str) -> None:
    started = time.perf_counter()
    hits = await store.aretrieve(query, k=3)
    print(hits_text(query, hits, time.perf_counter() - started))


async def run(folder: Path, state_dir: str, queries: list[str], once: bool) -> int:
    # building the store opens the state directory and imports the model's code: off the loop
    store = await asyncio.to_thread(DocumentStore, FolderSource(folder), state_dir=state_dir)
    print(f"indexing {folder.resolve()} (embedding cache in {state_dir})", file=sys.stderr)
    async with store:
        progress = asyncio.create_task(show_progress(store))
        await store.await_until_fresh()
        progress.cancel()
        print(progress_line(store.progress()), file=sys.stderr)
        print(
            f"ready: {store.statistics()['file_count']} documents, {len(store.errors())} errors",
            file=sys.stderr,
        )
        for query in queries:
            await answer(store, query)
        if once:
            return 0
        updates = asyncio.create_task(announce_updates(store))
        print("watching for changes; type a query (Ctrl-D to quit)", file=sys.stderr)
        while line := await asyncio.to_thread(sys.stdin.readline):
            if line.strip():
                await answer(store, line.strip())
        updates.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    if args is None:
        return 2
    folder = args.folder
    try:
        return asyncio.run(run(folder, args.state_dir, args.query, args.once))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
