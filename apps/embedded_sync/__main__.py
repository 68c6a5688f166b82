"""Keep a folder searchable from inside an application, offline.

    python -m apps.embedded_sync [FOLDER] [--state-dir DIR] [--query TEXT ...] [--once]

It shows a progress bar while the folder is first indexed, then prints a line each time a change becomes
searchable (with how long that took) and answers queries typed on standard input. ``--once`` indexes, answers
the ``--query`` arguments and exits. ``python -m apps.embedded_sync.asyncio_app`` is the same application
written for asyncio.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ragflow.connectors.folder import FolderSource
from ragflow.documents import Hit
from ragflow.engine import EpochReport
from ragflow.store import DocumentStore, Progress

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "docs"


def progress_line(p: Progress) -> str:
    """One line: documents and chunks done/total, rate and ETA."""
    total = "" if p.snapshot_complete else "+"
    eta = f"{p.eta:5.0f}s" if p.eta is not None else "    ?"
    width = 24
    fraction = p.chunks_embedded / p.chunks_seen if p.chunks_seen else 0.0
    bar = "#" * int(width * fraction) + "-" * (width - int(width * fraction))
    return (
        f"[{bar}] docs {p.documents_done}/{p.documents_seen}{total}  "
        f"chunks {p.chunks_embedded}/{p.chunks_seen}{total}  {p.chunk_rate:5.1f} chunks/s  ETA {eta}"
    )


def show_progress(store: DocumentStore, done: threading.Event) -> None:
    """Redraw the progress line on stderr until the initial indexing is done."""
    interactive = sys.stderr.isatty()
    last = 0.0
    while not done.wait(0.2):
        if interactive:
            print("\r" + progress_line(store.progress()), end="", file=sys.stderr, flush=True)
        elif time.monotonic() - last > 5:
            print(progress_line(store.progress()), file=sys.stderr, flush=True)
            last = time.monotonic()
    print(("\r" if interactive else "") + progress_line(store.progress()), file=sys.stderr, flush=True)


def print_hits(store: DocumentStore, query: str, k: int = 3) -> None:
    started = time.perf_counter()
    hits = store.retrieve(query, k=k)
    print(hits_text(query, hits, time.perf_counter() - started))


def hits_text(query: str, hits: list[Hit], seconds: float) -> str:
    """The hits of ``query`` as lines: distance, path (and page), the start of the text."""
    lines = [f"\n{query!r}: {len(hits)} hits in {seconds * 1000:.0f} ms"]
    for hit in hits:
        where = hit.metadata.get("path", "?")
        page = f" p.{hit.metadata['page_number']}" if "page_number" in hit.metadata else ""
        snippet = " ".join(hit.text.split())[:100]
        lines.append(f"  {hit.dist:.3f}  {where}{page}  {snippet}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None, description: str | None) -> argparse.Namespace | None:
    """The options both variants of the app take; ``None`` (after saying why) when the folder is missing."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", nargs="?", default=str(DEFAULT_FOLDER), help="folder to keep indexed")
    parser.add_argument("--state-dir", default=".ragflow", help="where the embedding cache lives")
    parser.add_argument("--query", action="append", default=[], help="a query to answer once indexed")
    parser.add_argument("--once", action="store_true", help="index, answer --query, and exit")
    args = parser.parse_args(argv)
    args.folder = Path(args.folder)
    if not args.folder.is_dir():
        print(
            f"error: {args.folder} is not a folder; pass the folder to index as the first argument",
            file=sys.stderr,
        )
        return None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    if args is None:
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    folder = args.folder
    store = DocumentStore(FolderSource(folder), state_dir=args.state_dir)
    print(f"indexing {folder.resolve()} (embedding cache in {args.state_dir})", file=sys.stderr)
    store.start()
    done = threading.Event()
    bar = threading.Thread(target=show_progress, args=(store, done), daemon=True)
    bar.start()
    try:
        store.wait_until_fresh()
        done.set()
        bar.join()
        stats = store.statistics()
        print(f"ready: {stats['file_count']} documents, {len(store.errors())} errors", file=sys.stderr)
        for error in store.errors():
            print(f"  error in {error.doc_id}: {error.message}", file=sys.stderr)
        for query in args.query:
            print_hits(store, query)
        if args.once:
            return 0

        def announce(report: EpochReport) -> None:
            took = report.seconds * 1000
            print(f"[epoch {report.epoch}] {report.output_changes} changes searchable ({took:.0f} ms)")

        store.on_update(announce)
        print("watching for changes; type a query (Ctrl-D or Ctrl-C to quit)", file=sys.stderr)
        for line in sys.stdin:
            if line.strip():
                print_hits(store, line.strip())
        if not sys.stdin.isatty():  # no terminal: keep syncing until interrupted
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        done.set()
        store.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
