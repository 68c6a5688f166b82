"""``DocumentStore``: sources + parser + splitter + embedder + index kept in sync by the engine, with
retrieval, statistics, per-document status and freshness."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .documents import DocumentSource, Embedder, Hit, Parser, Splitter, VectorIndex
from .engine import Change, DiskCache, Engine, EpochReport, MemoryCache, RowError, UdfCache
from .errors import ConfigError
from .filters import compile_filter
from .persistence import (
    CACHE_FILE,
    CheckpointBatch,
    Checkpointer,
    OnIncompatible,
    SavedDocument,
    SavedState,
    SourceState,
    StateIdentity,
    TolerantCache,
    open_state,
)
from .pipeline import DocumentFeed, IndexSink, ParsedDoc, build_pipeline, chunk_id
from .plugins import load_indexer
from .sources import position_scope

__all__ = ["DocumentError", "DocumentStatus", "DocumentStore", "Progress"]

log = logging.getLogger("ragflow.store")


@dataclass(frozen=True, slots=True)
class DocumentStatus:
    """Where one document stands: ``INGESTED`` (seen, not yet searchable), ``INDEXED`` or ``ERROR``."""

    doc_id: str
    metadata: dict[str, Any]
    status: str
    chunks: int
    error: str | None
    seen_at: float | None
    indexed_at: float | None


@dataclass(frozen=True, slots=True)
class DocumentError:
    """A document (or one of its chunks) that could not be indexed, and why."""

    doc_id: str
    stage: str
    message: str


@dataclass(frozen=True, slots=True)
class Progress:
    """Initial-indexing progress: documents and chunks done out of those seen so far."""

    documents_seen: int
    documents_done: int
    chunks_seen: int
    chunks_embedded: int
    elapsed: float
    snapshot_complete: bool
    documents_restored: int = 0
    """Documents loaded from the state directory at start (counted in ``documents_done`` too)."""
    chunks_restored: int = 0
    """Their chunks: in the index without going through the pipeline in this run."""

    @property
    def chunk_rate(self) -> float:
        return self.chunks_embedded / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left for the chunks seen so far (None until there is a rate)."""
        rate = self.chunk_rate
        return (self.chunks_seen - self.chunks_embedded) / rate if rate > 0 else None


class DocumentStore:
    """A live vector index over document sources.

    The smallest program::

        with DocumentStore(FolderSource("docs")) as store:
            store.wait_until_fresh(60)
            hits = store.retrieve("what is ragflow?", k=3)

    Defaults: the parser for text/Markdown/HTML/PDF/JSON/CSV, a token splitter sized to the embedder's
    input window, the local all-MiniLM-L6-v2 embedder, and the ``faiss`` index (exact search). Queries
    are embedded by ``query_embedder``: by default a replica of the embedder when it has one (the local
    model does: a second copy of its weights, ~90 MB), so a query never waits for an indexing batch.

    With a ``state_dir``, the store survives restarts (docs/persistence.md): embeddings are cached on disk
    there, and every ``checkpoint_interval`` seconds (and on ``stop``) the parsed documents and each
    source's position are committed to ``state.sqlite`` in one transaction. The next store on that
    directory loads them into the index at once and resumes each source from its position, so only what
    changed while it was stopped is parsed and embedded. A state written for another embedding model or
    parser/splitter is refused with a ``ConfigError`` (``IncompatibleStateError``), or emptied with
    ``on_incompatible_state="rebuild"``; a damaged one is moved aside and rebuilt.
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
        embed_batch_size: int = 8,
        max_epoch_documents: int = 64,
        checkpoint_interval: float = 1.0,
        on_incompatible_state: OnIncompatible = "refuse",
        query_embedder: Embedder | None = None,
    ) -> None:
        sources = [sources] if isinstance(sources, DocumentSource) else list(sources)
        if not sources:
            raise ConfigError("DocumentStore needs at least one source")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"source names must be unique, got {names}; pass name=... to tell them apart")
        self.embedder = embedder if embedder is not None else _default_embedder()
        self.query_embedder = query_embedder if query_embedder is not None else _query_embedder(self.embedder)
        if (self.query_embedder.model_id, self.query_embedder.dim) != (
            self.embedder.model_id,
            self.embedder.dim,
        ):
            raise ConfigError(
                f"query_embedder {self.query_embedder.model_id!r} ({self.query_embedder.dim}-d) must be the "
                f"same model as the embedder {self.embedder.model_id!r} ({self.embedder.dim}-d): vectors of "
                "different models cannot be compared"
            )
        self.parser = parser if parser is not None else _default_parser()
        self.splitter = splitter if splitter is not None else _default_splitter(self.embedder)
        self.index = index if index is not None else load_indexer("faiss")(dim=self.embedder.dim)
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
        self._lock = threading.Lock()
        self._docs: dict[str, ParsedDoc] = {}
        self._indexed_at: dict[str, float] = {}
        self._touched: set[str] = set()
        self._listeners: list[Callable[[EpochReport], None]] = []
        self._chunks_embedded = 0
        self._chunks_seen = 0
        self._restored = (0, 0)  # documents and chunks loaded from the state directory
        self._owners_memo: tuple[tuple[frozenset[int], int], dict[int, tuple[str, str]]] | None = None
        self._started_at: float | None = None
        self._last_indexed: float | None = None
        self._changed: set[str] = set()  # documents changed in the epoch being processed, for checkpoints
        self._stream_sources = {feed.name for feed in self.feeds if position_scope(feed.source) == "stream"}
        parser_id = f"parse:{type(self.parser).__qualname__}:{_splitter_id(self.splitter)}"
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
            parser_id=parser_id,
        )
        self.pipeline.embedded.sink(IndexSink(self.index))
        self.pipeline.parsed.subscribe(self._on_parsed)
        self.pipeline.chunks.subscribe(self._on_chunks)
        self.engine.on_epoch(self._on_epoch)
        self._checkpointer: Checkpointer | None = None
        if self.state_dir is not None:
            identity = StateIdentity(self.embedder.model_id, self.embedder.dim, parser_id)
            state, saved = open_state(self.state_dir, identity, on_incompatible_state)
            # vectors first: a checkpoint's documents should find theirs in the cache
            save_unsaved = tolerant.save_unsaved if tolerant is not None else None
            self._checkpointer = Checkpointer(state, checkpoint_interval, before_write=save_unsaved)
            try:
                self._restore(saved)
            except BaseException:
                self._checkpointer.close()
                raise

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> DocumentStore:
        """Start syncing in background threads; returns at once (see ``wait_until_fresh``)."""
        self._check_state_open()
        self._started_at = time.monotonic()
        if self._checkpointer is not None:
            self._checkpointer.start()
        self.engine.start("streaming")
        return self

    def run_static(self) -> None:
        """Index the sources' current contents and return (no live updates). With a ``state_dir``, the
        result is checkpointed and the directory released before this returns."""
        self._check_state_open()
        self._started_at = time.monotonic()
        try:
            self.engine.run("static", handle_signals=False)
        finally:
            self._close_state()

    def stop(self, timeout: float = 30) -> None:
        """Stop syncing; the index stays searchable. With a ``state_dir``, what was indexed is
        checkpointed and the directory released (another store may open it)."""
        self.engine.stop()
        try:
            self.engine.join(timeout)
        finally:
            self._close_state()

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

    # -- queries --------------------------------------------------------------------------------

    def retrieve(
        self,
        query: str,
        k: int = 3,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
    ) -> list[Hit]:
        """The ``k`` chunks closest to ``query`` (ascending cosine distance) among those whose metadata
        passes ``metadata_filter`` (JMESPath + ``globmatch``) and whose path matches the glob."""
        if k < 1:
            return []
        predicate = compile_filter(metadata_filter, filepath_globpattern)
        vector = self.query_embedder.embed([query])[0]
        return self.index.search(vector, k, predicate)

    def statistics(self) -> dict[str, int | None]:
        """``file_count`` (documents indexed), ``last_modified`` (newest ``modified_at``) and
        ``last_indexed`` (when the latest change became searchable), in Unix seconds."""
        with self._lock:
            docs = [d for d in self._docs.values() if d.outcome.error is None]
            modified = [int(m) for d in docs if (m := d.row.metadata.get("modified_at")) is not None]
            return {
                "file_count": len(docs),
                "last_modified": max(modified) if modified else None,
                "last_indexed": int(self._last_indexed) if self._last_indexed is not None else None,
            }

    def documents(self) -> list[DocumentStatus]:
        """Every document the sources currently hold, indexed or not, sorted by id."""
        statuses: dict[str, DocumentStatus] = {}
        with self._lock:
            for doc_id, doc in self._docs.items():
                error = doc.outcome.error
                statuses[doc_id] = DocumentStatus(
                    doc_id,
                    dict(doc.row.metadata),
                    "ERROR" if error else "INDEXED",
                    len(doc.outcome.chunks),
                    error,
                    _seconds(self._seen_ns(doc_id)),
                    self._indexed_at.get(doc_id),
                )
            for feed in self.feeds:
                for doc_id, row in list(feed.current.items()):
                    if doc_id not in statuses or statuses[doc_id].metadata != dict(row.metadata):
                        seen = _seconds(feed.seen_ns.get(doc_id))
                        statuses[doc_id] = DocumentStatus(
                            doc_id, dict(row.metadata), "INGESTED", 0, None, seen, None
                        )
        return [statuses[k] for k in sorted(statuses)]

    def inputs(
        self,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        return_status: bool = False,
    ) -> list[dict[str, Any]]:
        """Per-document metadata (Pathway's ``/v1/inputs``), optionally with ``_indexing_status``."""
        predicate = compile_filter(metadata_filter, filepath_globpattern)
        result = []
        for status in self.documents():
            if predicate is not None and not predicate(status.metadata):
                continue
            entry = dict(status.metadata)
            if return_status:
                entry["_indexing_status"] = status.status
                if status.error:
                    entry["_error"] = status.error
            result.append(entry)
        return result

    def errors(self) -> list[DocumentError]:
        """Documents that could not be parsed, and chunks that could not be embedded."""
        found = [DocumentError(s.doc_id, "parse", s.error) for s in self.documents() if s.error is not None]
        engine_errors = self.engine.current_errors()
        owners = self._chunk_owners({e.key for e in engine_errors if isinstance(e.key, int)})
        for error in engine_errors:
            owner = owners.get(error.key) if isinstance(error.key, int) else None
            if owner is None:
                found.append(_engine_error(error))
            else:  # a chunk's error is its document's, named by the chunk's place in it
                doc_id, place = owner
                found.append(DocumentError(doc_id, error.operator, f"{place}: {error.message}"))
        return found

    def _chunk_owners(self, chunk_ids: set[int]) -> dict[int, tuple[str, str]]:
        """The document and place (``chunk N``, with its page) of each of ``chunk_ids`` (a chunk's key is a
        digest of those, so the documents' chunks are searched; only done for chunks that have errors)."""
        owners: dict[int, tuple[str, str]] = {}
        if not chunk_ids:
            return owners
        memo_key = (frozenset(chunk_ids), self.engine.epoch)
        if self._owners_memo is not None and self._owners_memo[0] == memo_key:
            return self._owners_memo[1]  # /metrics and /v1/errors ask often; documents change per epoch
        with self._lock:
            docs = list(self._docs.items())
        for doc_id, parsed in docs:
            for piece in parsed.outcome.chunks:
                key = chunk_id(doc_id, piece.page_number, piece.ordinal)
                if key in chunk_ids:
                    page = f" (page {piece.page_number})" if piece.page_number is not None else ""
                    owners[key] = (doc_id, f"chunk {piece.ordinal}{page}")
            if len(owners) == len(chunk_ids):
                break
        self._owners_memo = (memo_key, owners)
        return owners

    def progress(self) -> Progress:
        """How far the initial indexing has got (documents and chunks)."""
        seen = sum(len(feed.current) for feed in self.feeds)
        with self._lock:
            done = len(self._docs)
            chunks_seen, embedded = self._chunks_seen, self._chunks_embedded
        elapsed = time.monotonic() - self._started_at if self._started_at is not None else 0.0
        complete = all(feed.snapshot_done.is_set() for feed in self.feeds)
        return Progress(seen, done, chunks_seen, embedded, elapsed, complete, *self._restored)

    def persistence_stats(self) -> dict[str, Any] | None:
        """Checkpointing as it goes (``None`` without a ``state_dir``): ``last_checkpoint`` (Unix
        seconds), ``checkpoints`` written since start, consecutive ``failures`` (a full disk), documents
        changed since the last checkpoint (``pending_documents``) and ``write_seconds`` spent writing."""
        return self._checkpointer.stats() if self._checkpointer is not None else None

    def embedding_stats(self) -> dict[str, int]:
        """How many chunk texts were embedded (``computed``) and how many came from the cache."""
        stats = self.pipeline.embedded.node.stats()
        return {"computed": stats["computed"], "cache_hits": stats["cache_hits"]}

    # -- engine callbacks (engine thread) -------------------------------------------------------

    def _embed(self, texts: list[str]) -> Any:
        vectors = self.embedder.embed(texts)
        with self._lock:
            self._chunks_embedded += len(texts)
        return vectors

    def _on_parsed(self, epoch: int, changes: list[Change]) -> None:
        with self._lock:
            for doc_id, parsed, diff in changes:
                self._changed.add(doc_id)
                if diff > 0:
                    self._docs[doc_id] = parsed
                    self._touched.add(doc_id)
                elif self._docs.get(doc_id) == parsed:
                    del self._docs[doc_id]
                    self._indexed_at.pop(doc_id, None)

    def _on_chunks(self, epoch: int, changes: list[Change]) -> None:
        with self._lock:
            self._chunks_seen += sum(diff for _, _, diff in changes if diff > 0)

    def _on_epoch(self, report: EpochReport) -> None:
        now = time.time()
        with self._lock:
            for doc_id in self._touched:
                if doc_id in self._docs:
                    self._indexed_at[doc_id] = now
            self._touched.clear()
            if report.output_changes:
                self._last_indexed = now
            changed, self._changed = self._changed, set()
            for feed in self.feeds:
                changed |= feed.take_settled()
            documents = {doc_id: self._saved(doc_id) for doc_id in changed} if self._checkpointer else {}
        if self._checkpointer is not None:
            # the epoch is complete here (index applied, vectors in the cache): a consistent cut
            sources: dict[str, SourceState | None] = {
                name: SourceState("stream", position)
                for name, position in report.positions.items()
                if name in self._stream_sources
            }
            self._checkpointer.add(CheckpointBatch(report.epoch, documents, sources))
        for listener in self._listeners:
            try:
                listener(report)
            except Exception:
                log.exception("on_update callback failed")

    def _saved(self, doc_id: str) -> SavedDocument | None:
        doc = self._docs.get(doc_id)
        return SavedDocument(doc, self._indexed_at.get(doc_id)) if doc is not None else None

    # -- persistence ----------------------------------------------------------------------------

    def _restore(self, saved: SavedState) -> None:
        """Load a checkpoint into the feeds, the pipeline's memos, the index and the document table, and
        give each source the position to resume from. A document some of whose vectors are not in the
        cache (a lost write, a damaged cache, or a chunk the embedder refused) goes through the pipeline
        again from its saved parse when the store starts: only the missing vectors are computed."""
        started = time.perf_counter()
        scopes = {feed.name: position_scope(feed.source) for feed in self.feeds}
        # a position saved under another scope cannot be read: that source starts again from the beginning
        replayed = {
            name for name, state in saved.sources.items() if name in scopes and state.scope != scopes[name]
        }
        known = [
            s for s in saved.documents if s.doc.row.source in scopes and s.doc.row.source not in replayed
        ]
        vectors = self.pipeline.cached_vectors({p.text for s in known for p in s.doc.outcome.chunks})
        kept: list[SavedDocument] = []
        resubmitted: list[SavedDocument] = []
        for s in known:
            complete = all(p.text in vectors for p in s.doc.outcome.chunks)
            (kept if complete else resubmitted).append(s)
        known_ids = {s.doc.row.doc_id for s in known}
        forget = CheckpointBatch(
            documents={s.doc.row.doc_id: None for s in saved.documents if s.doc.row.doc_id not in known_ids},
            sources={name: None for name in saved.sources if name not in scopes},
        )
        forget.sources.update(
            (name, SourceState(scope))
            for name, scope in scopes.items()
            if name not in saved.sources or name in replayed
        )
        if forget.documents:
            log.warning(
                "%d saved documents are not restored: their source is no longer configured, or its "
                "position changed meaning (it sends its documents again)",
                len(forget.documents),
            )
        if resubmitted:
            log.warning(
                "%d saved documents miss vectors in the embedding cache; they are indexed again from their "
                "saved parse when the store starts (only the missing vectors are computed)",
                len(resubmitted),
            )
        assert self._checkpointer is not None
        self._checkpointer.add(forget)
        records = self.pipeline.restore(
            self.feeds, [s.doc for s in kept], vectors, [s.doc for s in resubmitted]
        )
        for start in range(0, len(records), _RESTORE_BATCH):
            self.index.apply(records[start : start + _RESTORE_BATCH], [])
        with self._lock:
            for s in kept:
                self._docs[s.doc.row.doc_id] = s.doc
                if s.indexed_at is not None:
                    self._indexed_at[s.doc.row.doc_id] = s.indexed_at
            self._last_indexed = max(self._indexed_at.values(), default=None)
            self._restored = (len(kept), len(records))
        for feed in self.feeds:
            feed.position = _resume_position(feed.name, scopes[feed.name], known, saved, replayed)
        if saved.last_checkpoint is not None:
            log.info(
                "restored %d documents (%d chunks) from %s in %.2f s",
                len(kept),
                len(records),
                self.state_dir,
                time.perf_counter() - started,
            )

    def _check_state_open(self) -> None:
        if self._checkpointer is not None and self._checkpointer.closed:
            raise ConfigError(
                f"this DocumentStore has released its state directory {self.state_dir} (run_static or stop "
                "ends a store with a state_dir); create a new DocumentStore on it to run again"
            )

    def _close_state(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()

    def _seen_ns(self, doc_id: str) -> int | None:
        for feed in self.feeds:
            seen = feed.seen_ns.get(doc_id)  # one lookup: the source's thread may delete it meanwhile
            if seen is not None:
                return seen
        return None


_RESTORE_BATCH = 50_000
"""Chunks per index ``apply`` while restoring: bounds the temporary copies of one apply."""


def _resume_position(
    name: str, scope: str, kept: list[SavedDocument], saved: SavedState, replayed: set[str]
) -> Any:
    """The position ``name`` resumes from: ``None`` (from the beginning) without a checkpoint."""
    if saved.last_checkpoint is None or name in replayed:
        return None
    if scope == "stream":
        state = saved.sources.get(name)
        return state.position if state is not None else None
    return {
        s.doc.row.doc_id: s.doc.row.position
        for s in kept
        if s.doc.row.source == name and s.doc.row.position is not None
    }


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns is not None else None


def _engine_error(error: RowError) -> DocumentError:
    key = error.key
    doc_id = str(key[0]) if isinstance(key, tuple) and key else str(key)
    return DocumentError(doc_id, error.operator, error.message)


def _splitter_id(splitter: Splitter) -> str:
    fields = {k: v for k, v in vars(splitter).items() if isinstance(v, int | str | float)}
    return f"{type(splitter).__qualname__}{sorted(fields.items())}"


def _query_embedder(embedder: Embedder) -> Embedder:
    """What embeds queries: a replica of ``embedder`` when it offers one (``replica()``: the same model
    with its own lock, so a query does not wait for an indexing batch to finish), else ``embedder``."""
    replica = getattr(embedder, "replica", None)
    return replica() if callable(replica) else embedder


def _default_embedder() -> Embedder:
    from .embedders.local import LocalEmbedder

    return LocalEmbedder()


def _default_parser() -> Parser:
    from .parsers import DefaultParser

    return DefaultParser()


def _default_splitter(embedder: Embedder) -> Splitter:
    from .splitter import TokenSplitter

    return TokenSplitter(max_tokens=embedder.max_tokens)
