"""``ragflow index``: index the sources' current contents once, save the result in the state directory
and print a summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from ragflow.cli._config_options import add_config_arguments, config_from
from ragflow.cli._errors import EXIT_FAILURE, EXIT_OK
from ragflow.cli._output import configure_logging, say
from ragflow.cli._progress import ProgressBar
from ragflow.embedders import embedder_stats

if TYPE_CHECKING:
    from ragflow.config import RagflowConfig
    from ragflow.documents import Embedder
    from ragflow.store import DocumentError


HELP = "index the sources once and print a summary"
DESCRIPTION = (
    "Read the sources' current contents, index them and exit with a summary (documents, "
    "chunks, errors, time, chunks/s). With a state directory, the result is saved there, so a later "
    "`ragflow index` or `ragflow serve` over it starts from this index and processes only what changed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``index``'s options."""
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 if any document could not be indexed")


def run(args: argparse.Namespace) -> int:
    """Run ``ragflow index`` and return its exit code."""
    configure_logging("warning")
    config = config_from(args)
    summary = index_documents(config, progress=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        for line in summary.lines():
            print(line)
    if args.strict and summary.errors:
        say(f"error: {len(summary.errors)} documents could not be indexed (--strict)")
        return EXIT_FAILURE
    return EXIT_OK


@dataclass(frozen=True, slots=True)
class IndexSummary:
    """What ``ragflow index`` did."""

    documents: int
    """Documents indexed (without error)."""
    chunks: int
    """Chunks in the index."""
    embedded: int
    """Chunk texts embedded by the model in this run."""
    cached: int
    """Chunk texts whose vectors came from the embedding cache."""
    errors: tuple[DocumentError, ...]
    seconds: float
    """Time spent indexing, loading the embedding model excluded."""
    load_seconds: float = 0.0
    """Time spent loading the embedding model."""
    processed: int | None = None
    """Chunks that went through the pipeline in this run (``None``: all of ``chunks``)."""
    restored_documents: int = 0
    """Documents loaded from the state directory's last checkpoint instead of being indexed again."""
    restored_chunks: int = 0
    embedder: dict[str, Any] = field(default_factory=dict)
    """How the model ran (``ragflow.embedders.embedder_stats``): device, precision, batch size, texts/s."""

    @property
    def chunks_per_second(self) -> float:
        processed = self.chunks if self.processed is None else self.processed
        return processed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "cached": self.cached,
            "errors": [{"doc_id": e.doc_id, "stage": e.stage, "message": e.message} for e in self.errors],
            "seconds": round(self.seconds, 3),
            "load_seconds": round(self.load_seconds, 3),
            "chunks_per_second": round(self.chunks_per_second, 2),
            "processed": self.chunks if self.processed is None else self.processed,
            "restored_documents": self.restored_documents,
            "restored_chunks": self.restored_chunks,
            "embedder": self.embedder,
        }

    def lines(self) -> Iterator[str]:
        yield f"documents  {self.documents}"
        yield f"chunks     {self.chunks} ({self.embedded} embedded, {self.cached} from the cache)"
        if self.restored_documents:
            yield (
                f"restored   {self.restored_documents} documents, {self.restored_chunks} chunks from the "
                "saved state (not indexed again)"
            )
        yield f"errors     {len(self.errors)}"
        for error in self.errors:
            yield f"  {error.doc_id} ({error.stage}): {error.message}"
        loading = f" (+ {self.load_seconds:.1f} s loading the embedding model)" if self.load_seconds else ""
        yield f"time       {self.seconds:.1f} s{loading}"
        if self.processed == 0:
            yield "rate       - (nothing changed since the saved state)"
        else:
            yield f"rate       {self.chunks_per_second:.1f} chunks/s"
        if self.embedder.get("device"):
            yield f"embedder   {describe_embedder(self.embedder)}"


def describe_embedder(stats: dict[str, Any]) -> str:
    """How the model runs, in one line: ``cpu, bfloat16 in batches of 16 (one text: float32), ...``."""
    line = f"{stats['device']}, {stats['precision']} in batches of {stats['batch_size']}"
    if stats.get("single_precision") not in (None, stats["precision"]):
        line += f" (one text: {stats['single_precision']})"
    if stats.get("compiled"):
        line += f", bfloat16 {stats['compiled']}"
    if stats.get("texts_embedded"):
        line += f", {stats['texts_per_second']:.1f} chunks/s inside the model"
    return line


def index_documents(
    config: RagflowConfig, *, embedder: Embedder | None = None, progress: TextIO | None = None
) -> IndexSummary:
    """Index the configured sources' current contents once (static mode) and summarise.

    ``embedder`` replaces the configured one (tests pass a fast fake); ``progress`` is a stream to draw
    a progress bar on.
    """
    store = config.build_store(embedder=embedder)
    load_seconds = _load_model(store.embedder)
    started = time.monotonic()
    bar = ProgressBar(store, progress) if progress is not None else contextlib.nullcontext()
    with bar:
        store.run_static()
    seconds = time.monotonic() - started
    stats = store.embedding_stats()
    done = store.progress()
    return IndexSummary(
        documents=int(store.statistics()["file_count"] or 0),
        chunks=store.index.count(),
        embedded=stats["computed"],
        cached=stats["cache_hits"],
        errors=tuple(store.errors()),
        seconds=seconds,
        load_seconds=load_seconds,
        processed=done.chunks_seen,
        restored_documents=done.documents_restored,
        restored_chunks=done.chunks_restored,
        embedder=embedder_stats(store.embedder),
    )


def _load_model(embedder: Embedder) -> float:
    """Load a local model now, so that the indexing rate does not count the seconds it takes."""
    load = getattr(embedder, "load", None)
    if not callable(load):
        return 0.0
    started = time.monotonic()
    load()
    return time.monotonic() - started
