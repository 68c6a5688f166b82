"""``DocumentStore``: the pipeline from sources to the index, built and run by the engine; its lifecycle
(start, stop, a static run), retrieval, and the engine's callbacks that keep the document table and the
checkpoints up to date. What the store reports is answered by ``reports``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ..documents import DocumentSource, Embedder, Hit, Parser, Splitter, VectorIndex
from ..embedders.query_batching import QueryBatcher
from ..engine import DiskCache, Engine, EpochReport, MemoryCache, UdfCache
from ..errors import ConfigError
from ..filters import compile_filter
from ..persistence import (
    CACHE_FILE,
    CheckpointBatch,
    Checkpointer,
    OnIncompatible,
    SavedState,
    SourceState,
    StateIdentity,
    TolerantCache,
    open_state,
)
from ..pipeline import ChunkPiece, DocumentFeed, IndexSink, build_pipeline
from ..retrieval import (
    LEXICAL_FILE,
    CrossEncoderReranker,
    LexicalIndex,
    RetrievalSettings,
    Retriever,
    SearchIndexes,
    SearchMode,
)
from ..sources import position_scope
from .async_api import AsyncStoreMethods
from .checkpoint_wait import CheckpointWaits
from .document_table import DocumentTable
from .parts import StoreParts, keep_index_graphs
from .reports import DocumentError, DocumentStatus, Progress, SourceReport, StoreReports
from .restore import restore_checkpoint
from .updates import UpdateHub

__all__ = ["DocumentStore"]

log = logging.getLogger("ragflow.store")


class DocumentStore(AsyncStoreMethods):
    """A live vector index over document sources.

    The smallest program::

        with DocumentStore(FolderSource("docs")) as store:
            store.wait_until_fresh(60)
            hits = store.retrieve("what is ragflow?", k=3)

    In asyncio code, ``async with``, ``aretrieve``, ``await_until_fresh`` and ``updates()`` do the same
    without blocking the loop (``AsyncStoreMethods``, docs/embedding.md).

    Defaults: the parser for text/Markdown/HTML/PDF/JSON/CSV, a token splitter sized to the embedder's
    input window, the local all-MiniLM-L6-v2 embedder, and the ``faiss`` index (exact search). Queries
    are embedded by ``query_embedder``: by default a replica of the embedder when it has one (the local
    model does: a second copy of its weights, ~90 MB), so a query never waits for an indexing batch.

    With a ``state_dir``, the store survives restarts (docs/persistence.md): embeddings are cached on disk
    there, and every ``checkpoint_interval`` seconds (and on ``stop``) the parsed documents and each
    source's position are committed to ``state.sqlite`` in one transaction. The next store on that
    directory loads them into the index at once and resumes each source from its position, so only what
    changed while it was stopped is parsed and embedded. An index that keeps graphs (the faiss index's
    HNSW graphs) keeps them in the ``graphs`` folder there, so that a restart adopts them instead of
    rebuilding them. A state written for another embedding model or parser/splitter is refused with a
    ``ConfigError`` (``IncompatibleStateError``), or emptied with ``on_incompatible_state="rebuild"``; a
    damaged one is moved aside and rebuilt.
    """

    def __init__(
        self,
        sources: DocumentSource | Sequence[DocumentSource],
        *,
        parser: Parser | None = None,
        splitter: Splitter | None = None,
        embedder: Embedder | None = None,
        index: VectorIndex | None = None,
        state_dir: str | Path | None = None,
        cache: UdfCache | None = None,
        embed_batch_size: int = 64,  # per embed() call; a local model sorts them by length and batches them
        max_epoch_documents: int = 64,
        checkpoint_interval: float = 1.0,
        on_incompatible_state: OnIncompatible = "refuse",
        query_embedder: Embedder | None = None,
        lexical: bool = True,
        retrieval: RetrievalSettings | None = None,
        reranker: CrossEncoderReranker | None = None,
        seed: SavedState | None = None,
    ) -> None:
        sources = [sources] if isinstance(sources, DocumentSource) else list(sources)
        if not sources:
            raise ConfigError("DocumentStore needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must be unique, got {names}; pass name=... to tell them apart")
        parts = StoreParts.resolve(
            parser=parser, splitter=splitter, embedder=embedder, query_embedder=query_embedder, index=index
        )
        self.parser, self.splitter, self.index = parts.parser, parts.splitter, parts.index
        self.embedder, self.query_embedder = parts.embedder, parts.query_embedder
        # concurrent retrievals share forward passes, and indexing gives way to them
        self.query_batcher = QueryBatcher(self.query_embedder)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        if checkpoint_interval <= 0:
            raise ConfigError(
                f"checkpoint_interval must be a positive number of seconds, got {checkpoint_interval}"
            )
        if cache is None:
            cache = DiskCache(self.state_dir / CACHE_FILE) if self.state_dir else MemoryCache()
        self.cache = cache
        # an epoch holds at most this many document changes, so a large folder becomes searchable bit by bit
        self.feeds = [DocumentFeed(source, snapshot_slice=max_epoch_documents) for source in sources]
        self.engine = Engine(
            max_epoch_changes=2 * max_epoch_documents, max_pending_changes=4 * max_epoch_documents
        )
        self._table = DocumentTable()
        self._embedding: dict[str, float] = {}  # the epoch in progress: first embed call, end of the last
        self._reports = StoreReports(self._table, self.feeds, self.engine)
        self._listeners: list[Callable[[EpochReport], None]] = []
        self._updates = UpdateHub()  # the streams of updates()
        self._started_at: float | None = None
        self._stream_sources = {feed.name for feed in self.feeds if position_scope(feed.source) == "stream"}
        # a cache write that fails (full disk) must not stop indexing: restore re-checks the vectors
        tolerant = TolerantCache(self.cache, self.state_dir / CACHE_FILE) if self.state_dir else None
        self.pipeline = build_pipeline(
            self.engine,
            self.feeds,
            self.parser,
            self.splitter,
            self._embed,
            model_id=self.embedder.model_id,
            embed_batch_size=embed_batch_size,
            cache=tolerant if tolerant is not None else self.cache,
            parser_id=parts.parser_id,
        )
        # the lexical index is applied with the vector index, in the same epoch (docs/retrieval.md)
        lexical_index = None
        if lexical:
            lexical_index = LexicalIndex(
                self.state_dir / LEXICAL_FILE if self.state_dir is not None else None
            )
        self.indexes = SearchIndexes(self.index, lexical_index)
        self.retriever = Retriever(
            self.indexes, self._embed_query, self._vectors_of, self.chunks, retrieval, reranker
        )
        self.apply_lock = threading.Lock()
        """Held while an epoch is applied to the index: a migration's swap holds it to compare this store
        with the next generation while this one cannot move (ragflow.store.migrating)."""
        self.before_embed: Callable[[], None] | None = None
        self._seconds_per_text = 0.0  # measured by _embed_yielding; 0: the first slice is a full one
        """Called before each slice of an indexing batch is embedded (``_embed_yielding``): a migration's
        new generation waits there while live changes and queries need the processor."""
        self.pipeline.embedded.sink(
            IndexSink(cast(VectorIndex, _GuardedIndexes(self.indexes, self.apply_lock)))
        )
        self.pipeline.parsed.subscribe(self._table.on_parsed)
        self.pipeline.chunks.subscribe(self._table.on_chunks)
        self.engine.on_epoch(self._on_epoch)
        self._checkpointer: Checkpointer | None = None
        if self.state_dir is not None:
            identity = StateIdentity(self.embedder.model_id, self.embedder.dim, parts.parser_id)
            state, saved = open_state(self.state_dir, identity, on_incompatible_state)
            seeded = seed is not None and saved.last_checkpoint is None and not saved.documents
            if seeded:
                assert seed is not None
                saved = seed  # a new generation starts from the saved parses of the one it replaces
            keep_index_graphs(self.index, self.state_dir, adopt=bool(saved.documents))
            # vectors first: a checkpoint's documents should find theirs in the cache
            save_unsaved = tolerant.save_unsaved if tolerant is not None else None
            self._checkpointer = Checkpointer(state, checkpoint_interval, before_write=save_unsaved)
            try:
                restore_checkpoint(
                    saved,
                    feeds=self.feeds,
                    pipeline=self.pipeline,
                    index=self.indexes,
                    table=self._table,
                    checkpointer=self._checkpointer,
                    state_dir=self.state_dir,
                    seeded=seeded,
                )
            except BaseException:
                self._checkpointer.close()
                raise
        # after the store's own epoch listener: an epoch is queued for the checkpoint before a wait ends
        self._checkpoint_waits = CheckpointWaits(self.engine, self.feeds, self._checkpointer)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> DocumentStore:
        """Start syncing in background threads; returns at once (see ``wait_until_fresh``)."""
        self._begin()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self.engine.start("streaming")
        return self

    def run_static(self) -> None:
        """Index the sources' current contents and return (no live updates). With a ``state_dir``, the
        result is checkpointed and the directory released before this returns."""
        self._begin()
        try:
            self.engine.run("static", handle_signals=False)
        finally:
            self._close_state()
            self._updates.stop()

    def stop(self, timeout: float = 30) -> None:
        """Stop syncing; the index stays searchable. With a ``state_dir``, what was indexed is
        checkpointed and the directory released (another store may open it)."""
        self.engine.stop()
        try:
            self.engine.join(timeout)
        finally:
            self._close_state()
            self._updates.stop()

    def __enter__(self) -> DocumentStore:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def wait_until_fresh(self, timeout: float | None = None) -> bool:
        """Wait until every source has delivered its snapshot and everything it sent is searchable.
        Returns False on timeout (or if the engine failed: see ``engine.failure``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for feed in self.feeds:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not feed.snapshot_done.wait(remaining):
                return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.engine.wait_idle(remaining)

    def on_update(self, callback: Callable[[EpochReport], None]) -> None:
        """Call ``callback(report)`` after each epoch, once its changes are searchable."""
        self._listeners.append(callback)

    def _begin(self) -> None:
        """What every run does first (``start``, ``run_static``): refuse a released state directory,
        note the start time."""
        if self._checkpointer is not None and self._checkpointer.closed:
            raise ConfigError(
                f"this DocumentStore has released its state directory {self.state_dir} (run_static or stop "
                "ends a store with a state_dir); create a new DocumentStore on it to run again"
            )
        self._started_at = time.monotonic()
        self._updates.open()

    def _close_state(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()

    # -- queries --------------------------------------------------------------------------------

    def retrieve(
        self,
        query: str,
        k: int = 3,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        *,
        search_mode: SearchMode | None = None,
        rerank: bool | None = None,
        rerank_k: int | None = None,
        diversity: float | None = None,
        context_window: int = 0,
    ) -> list[Hit]:
        """The ``k`` chunks that best answer ``query``, best first, among those whose metadata passes
        ``metadata_filter`` (JMESPath + ``globmatch``) and whose path matches the glob; the filters apply
        inside every search.

        ``search_mode`` (default: the store's ``RetrievalSettings``, ``hybrid``): ``vector`` (ascending
        cosine distance), ``lexical`` (BM25) or ``hybrid`` (both, fused by reciprocal rank). ``rerank``
        orders the best ``rerank_k`` with the store's cross-encoder; ``diversity`` (0..1) trades
        relevance for variety (MMR); ``context_window`` returns each hit with that many neighbouring
        chunks on each side, merged (docs/retrieval.md). Raises ``ConfigError`` for a mode, a reranking
        or a value the store cannot serve."""
        if k < 1:
            return []
        predicate = compile_filter(metadata_filter, filepath_globpattern)
        return self.retriever.retrieve(
            query,
            k,
            predicate,
            search_mode=search_mode,
            rerank=rerank,
            rerank_k=rerank_k,
            diversity=diversity,
            context_window=context_window,
        )

    def _embed_query(self, query: str) -> npt.NDArray[np.float32]:
        return self.query_batcher.embed([query])[0]

    def _vectors_of(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """The vectors of chunk ``texts``: from the embedding cache, the rest embedded now."""
        cached = self.pipeline.cached_vectors(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in cached]
        if missing:
            cached.update(zip(missing, self.query_embedder.embed(missing), strict=True))
        return np.stack([cached[t] for t in texts])

    def statistics(
        self, metadata_filter: str | None = None, filepath_globpattern: str | None = None
    ) -> dict[str, int | None]:
        """``file_count`` (documents indexed), ``last_modified`` (newest ``modified_at``) and
        ``last_indexed`` (when the latest change became searchable), in Unix seconds.

        With a filter, of the documents whose searchable version passes it (as ``retrieve`` sees them:
        a document being re-indexed counts by the metadata it is searchable with until its new version
        is), and ``last_indexed`` is when the latest of them became searchable."""
        return self._reports.statistics(compile_filter(metadata_filter, filepath_globpattern))

    def documents(self) -> list[DocumentStatus]:
        """Every document the sources currently hold, indexed or not, sorted by id."""
        return self._reports.documents()

    def inputs(
        self,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        return_status: bool = False,
    ) -> list[dict[str, Any]]:
        """Per-document metadata (Pathway's ``/v1/inputs``), optionally with ``_indexing_status``."""
        return self._reports.inputs(compile_filter(metadata_filter, filepath_globpattern), return_status)

    def chunks(self, doc_id: str) -> tuple[ChunkPiece, ...]:
        """The chunks of the version of ``doc_id`` the store holds, in document order (text, character
        span in its parsed unit, page and location): empty when it holds none or the document failed.
        What a citation's passage is shown among (its neighbours)."""
        return self._reports.chunks(doc_id)

    def errors(self) -> list[DocumentError]:
        """Documents that could not be parsed, and chunks that could not be embedded."""
        return self._reports.errors()

    def progress(self) -> Progress:
        """How far the initial indexing has got (documents and chunks)."""
        elapsed = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        return self._reports.progress(elapsed)

    def sources(self) -> list[SourceReport]:
        """One report per source, in the order given: its kind, the documents it holds now, whether its
        snapshot is complete, and its health with the reason (from the ``SourceStatus`` a source exposes
        as ``status``), with its own counters and gauges."""
        return self._reports.sources()

    def persistence_stats(self) -> dict[str, Any] | None:
        """Checkpointing as it goes (``None`` without a ``state_dir``): ``last_checkpoint`` (Unix
        seconds), ``checkpoints`` written since start, consecutive ``failures`` (a full disk), documents
        changed since the last checkpoint (``pending_documents``) and ``write_seconds`` spent writing."""
        return self._checkpointer.stats() if self._checkpointer is not None else None

    def flush_checkpoint(self) -> bool:
        """Write what is not yet checkpointed now (``True`` without a ``state_dir``); ``False`` if it
        failed (it stays pending for the next checkpoint)."""
        return self._checkpointer.flush() if self._checkpointer is not None else True

    def embedding_stats(self) -> dict[str, int]:
        """How many chunk texts were embedded (``computed``) and how many came from the cache."""
        stats = self.pipeline.embedded.node.stats()
        return {"computed": stats["computed"], "cache_hits": stats["cache_hits"]}

    # -- engine callbacks (engine thread) -------------------------------------------------------

    def _embed(self, texts: list[str]) -> Any:
        started = time.time()
        if self.before_embed is None:
            vectors = self.embedder.embed(texts)
        else:
            vectors = self._embed_yielding(texts, self.before_embed)
        self._table.count_embedded(len(texts))
        # the epoch's embedding window, for the stage times of /v1/inputs
        self._embedding.setdefault("embedding_started", started)
        self._embedding["embedded"] = time.time()
        return vectors

    def _embed_yielding(self, texts: list[str], before: Callable[[], None]) -> Any:
        """``texts`` embedded in slices, ``before()`` called before each: a migration's generation gives
        way to live work between slices. The model takes one call at a time, so a live edit (or a query)
        waits for the slice in progress: each is sized to take about ``_YIELD_SECONDS`` at the rate the
        previous ones ran (at most ``_YIELD_SLICE`` texts)."""
        parts = []
        start = 0
        while start < len(texts):
            before()
            per_text = self._seconds_per_text
            size = (
                _YIELD_SLICE if per_text <= 0 else max(1, min(_YIELD_SLICE, int(_YIELD_SECONDS / per_text)))
            )
            began = time.perf_counter()
            parts.append(np.asarray(self.embedder.embed(texts[start : start + size]), dtype=np.float32))
            measured = (time.perf_counter() - began) / len(texts[start : start + size])
            self._seconds_per_text = measured if per_text <= 0 else 0.5 * per_text + 0.5 * measured
            start += size
        return np.concatenate(parts) if parts else self.embedder.embed(texts)

    def _on_epoch(self, report: EpochReport) -> None:
        now = time.time()
        stages = {"epoch_started": now - (time.perf_counter_ns() - report.started_ns) / 1e9}
        stages.update(self._embedding)
        self._embedding = {}
        changed = self._table.end_epoch(now, bool(report.output_changes), stages)
        for feed in self.feeds:
            changed |= feed.take_settled()
        self._publish_update(report, changed, now)
        if self._checkpointer is not None:
            # the epoch is complete here (index applied, vectors in the cache): a consistent cut
            sources: dict[str, SourceState | None] = {
                name: SourceState("stream", position)
                for name, position in report.positions.items()
                if name in self._stream_sources
            }
            self._checkpointer.add(CheckpointBatch(report.epoch, self._table.saved(changed), sources))
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:
                log.exception("on_update callback failed")


_YIELD_SLICE = 16
"""The most texts a migration's generation embeds between two chances for live work to go first."""
_YIELD_SECONDS = 0.2
"""About how long one slice of a migration's generation takes (``_embed_yielding``)."""


class _GuardedIndexes:
    """The store's indexes as its sink applies them: each epoch under ``lock`` (``apply_lock``)."""

    def __init__(self, indexes: SearchIndexes, lock: threading.Lock) -> None:
        self._indexes = indexes
        self._lock = lock

    def apply(self, records: Any, deletes: Any) -> None:
        with self._lock:
            self._indexes.apply(records, deletes)
