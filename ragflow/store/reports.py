"""What a ``DocumentStore`` tells about itself: the report types (``DocumentStatus``, ``DocumentError``,
``Progress``, ``SourceReport``) and ``StoreReports``, the queries that build them from the document table,
the feeds and the engine (documents, inputs, errors and the chunks they belong to, progress, statistics,
sources)."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..engine import Engine, RowError
from ..filters import MetadataFilter
from ..pipeline import ChunkPiece, DocumentFeed, ParsedDoc, chunk_keys
from ..plugins import CONNECTORS
from ..sources import SourceSample, source_status
from .document_table import DocumentTable

__all__ = ["DocumentError", "DocumentStatus", "Progress", "SourceReport", "StoreReports"]


@dataclass(frozen=True, slots=True)
class DocumentStatus:
    """Where one document stands: ``INGESTED`` (seen, not yet searchable), ``INDEXED`` or ``ERROR``
    (nothing of it could be indexed). An ``INDEXED`` document may still carry an ``error``: the part of it
    that could not be read."""

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


@dataclass(frozen=True, slots=True)
class SourceReport:
    """How one source is doing: what it holds, whether its snapshot is in, and its health with the reason
    (from the ``SourceStatus`` it exposes as ``status``; a source without one always reads healthy)."""

    name: str
    kind: str
    """The source's entry-point name (``folder``, ``s3``...), or its class name when it has none."""
    documents: int
    """Documents the source holds now (indexed, queued or failed)."""
    snapshot_complete: bool
    healthy: bool
    reason: str | None
    """What is wrong and what to do, while unhealthy."""
    since: float | None
    """When the source last became healthy or unhealthy (Unix seconds); ``None`` without a status."""
    counters: tuple[SourceSample, ...] = ()
    gauges: tuple[SourceSample, ...] = ()


class StoreReports:
    """The store's reporting queries; ``DocumentStore`` answers its own with them (any thread)."""

    def __init__(self, table: DocumentTable, feeds: Sequence[DocumentFeed], engine: Engine) -> None:
        self._table = table
        self._feeds = feeds
        self._engine = engine
        self._owners_memo: tuple[tuple[frozenset[int], int], dict[int, tuple[str, str]]] | None = None

    def statistics(self, predicate: MetadataFilter | None = None) -> dict[str, int | None]:
        """See ``DocumentStore.statistics``; ``predicate``: its filters, compiled."""
        table = self._table
        with table.lock:
            docs = {
                doc_id: doc
                for doc_id, doc in table.docs.items()
                if _searchable(doc) and (predicate is None or predicate(doc.row.metadata))
            }
            modified = [int(m) for d in docs.values() if (m := d.row.metadata.get("modified_at")) is not None]
            if predicate is None:
                last = table.last_indexed  # deletions count too: the index changed then
            else:
                last = max(
                    (t for doc_id in docs if (t := table.indexed_at.get(doc_id)) is not None), default=None
                )
            return {
                "file_count": len(docs),
                "last_modified": max(modified) if modified else None,
                "last_indexed": int(last) if last is not None else None,
            }

    def documents(self) -> list[DocumentStatus]:
        """See ``DocumentStore.documents``."""
        statuses: dict[str, DocumentStatus] = {}
        table = self._table
        with table.lock:
            for doc_id, doc in table.docs.items():
                error = doc.outcome.error
                statuses[doc_id] = DocumentStatus(
                    doc_id,
                    dict(doc.row.metadata),
                    "INDEXED" if _searchable(doc) else "ERROR",
                    len(doc.outcome.chunks),
                    error,
                    _seconds(self._seen_ns(doc_id)),
                    table.indexed_at.get(doc_id),
                )
            for feed in self._feeds:
                for doc_id, row in list(feed.current.items()):
                    if doc_id not in statuses or statuses[doc_id].metadata != dict(row.metadata):
                        seen = _seconds(feed.seen_ns.get(doc_id))
                        statuses[doc_id] = DocumentStatus(
                            doc_id, dict(row.metadata), "INGESTED", 0, None, seen, None
                        )
        return [statuses[k] for k in sorted(statuses)]

    def inputs(self, predicate: MetadataFilter | None, return_status: bool) -> list[dict[str, Any]]:
        """See ``DocumentStore.inputs``; ``predicate``: its filters, compiled."""
        result = []
        for status in self.documents():
            if predicate is not None and not predicate(status.metadata):
                continue
            entry = dict(status.metadata)
            if return_status:
                entry["_indexing_status"] = status.status
                if status.error:
                    entry["_error"] = status.error
                if status.indexed_at is not None:
                    entry["_indexed_at"] = status.indexed_at
                    with self._table.lock:
                        entry["_stages"] = dict(self._table.stages.get(status.doc_id, {}))
            result.append(entry)
        return result

    def chunks(self, doc_id: str) -> tuple[ChunkPiece, ...]:
        """See ``DocumentStore.chunks``."""
        with self._table.lock:
            parsed = self._table.docs.get(doc_id)
        return parsed.outcome.chunks if parsed is not None else ()

    def errors(self, doc_ids: Collection[str] | None = None) -> list[DocumentError]:
        """See ``DocumentStore.errors``; with ``doc_ids``, only the errors of those documents."""
        if doc_ids is None:
            statuses = self.documents()
            found = [DocumentError(s.doc_id, "parse", s.error) for s in statuses if s.error is not None]
        else:
            with self._table.lock:
                parsed = {d: self._table.docs[d] for d in sorted(doc_ids) if d in self._table.docs}
            found = [DocumentError(d, "parse", p.outcome.error) for d, p in parsed.items() if p.outcome.error]
        engine_errors = self._engine.current_errors()
        owners = self._chunk_owners({e.key for e in engine_errors if isinstance(e.key, int)})
        for error in engine_errors:
            owner = owners.get(error.key) if isinstance(error.key, int) else None
            if owner is None:
                found.append(_engine_error(error))
            else:  # a chunk's error is its document's, named by the chunk's place in it
                doc_id, place = owner
                found.append(DocumentError(doc_id, error.operator, f"{place}: {error.message}"))
        return found if doc_ids is None else [e for e in found if e.doc_id in doc_ids]

    def progress(self, elapsed: float) -> Progress:
        """See ``DocumentStore.progress``; ``elapsed``: seconds since the store started."""
        seen = sum(len(feed.current) for feed in self._feeds)
        table = self._table
        with table.lock:
            done = len(table.docs)
            chunks_seen, embedded = table.chunks_seen, table.chunks_embedded
        complete = all(feed.snapshot_done.is_set() for feed in self._feeds)
        return Progress(seen, done, chunks_seen, embedded, elapsed, complete, *table.restored)

    def sources(self) -> list[SourceReport]:
        """See ``DocumentStore.sources``."""
        reports = []
        for feed in self._feeds:
            status = source_status(feed.source)
            health = status.health if status is not None else None
            reports.append(
                SourceReport(
                    name=feed.name,
                    kind=_kind_of(type(feed.source)),
                    documents=len(feed.current),
                    snapshot_complete=feed.snapshot_done.is_set(),
                    healthy=health.healthy if health is not None else True,
                    reason=health.reason if health is not None else None,
                    since=health.since if health is not None else None,
                    counters=tuple(status.counters()) if status is not None else (),
                    gauges=tuple(status.gauges()) if status is not None else (),
                )
            )
        return reports

    def _chunk_owners(self, chunk_ids: set[int]) -> dict[int, tuple[str, str]]:
        """The document and place (``chunk N``, with its page) of each of ``chunk_ids`` (a chunk's key is a
        digest of those, so the documents' chunks are searched; only done for chunks that have errors)."""
        owners: dict[int, tuple[str, str]] = {}
        if not chunk_ids:
            return owners
        memo_key = (frozenset(chunk_ids), self._engine.epoch)
        if self._owners_memo is not None and self._owners_memo[0] == memo_key:
            return self._owners_memo[1]  # /metrics and /v1/errors ask often; documents change per epoch
        for doc_id, parsed in self._table.items():
            pieces = parsed.outcome.chunks
            for piece, key in zip(pieces, chunk_keys(doc_id, pieces), strict=True):
                if key in chunk_ids:
                    owners[key] = (doc_id, _chunk_place(piece))
            if len(owners) == len(chunk_ids):
                break
        self._owners_memo = (memo_key, owners)
        return owners

    def _seen_ns(self, doc_id: str) -> int | None:
        for feed in self._feeds:
            seen = feed.seen_ns.get(doc_id)  # one lookup: the source's thread may delete it meanwhile
            if seen is not None:
                return seen
        return None


def _seconds(ns: int | None) -> float | None:
    return ns / 1e9 if ns is not None else None


def _engine_error(error: RowError) -> DocumentError:
    key = error.key
    doc_id = str(key[0]) if isinstance(key, tuple) and key else str(key)
    return DocumentError(doc_id, error.operator, error.message)


@functools.cache
def _kind_of(cls: type) -> str:
    """The name ``cls`` is registered under in the ``ragflow.connectors`` entry points, else its name.
    Only an entry point naming a class of that name in the class's package is loaded (an optional
    plugin's dependencies are not imported to answer)."""
    module = cls.__module__
    for entry in entry_points(group=CONNECTORS):
        in_package = module == entry.module or module.startswith(f"{entry.module}.")
        if entry.attr == cls.__qualname__ and in_package and _loaded(entry) is cls:
            return entry.name
    return cls.__name__


def _loaded(entry: EntryPoint) -> object:
    try:
        return entry.load()
    except Exception:  # a broken plugin must not break a report
        return None


def _chunk_place(piece: ChunkPiece) -> str:
    """Where a chunk is in its document, for an error message: ``chunk 2 (page 4)``, ``chunk 0 (slide 3)``."""
    where = [f"page {piece.page_number}"] if piece.page_number is not None else []
    where += [f"{name} {value}" for name, value in (piece.location or {}).items()]
    return f"chunk {piece.ordinal}" + (f" ({', '.join(where)})" if where else "")


def _searchable(doc: ParsedDoc) -> bool:
    """Whether any of a document is in the index: a document read only in part (a scanned page without
    OCR, an attachment past its cap) is indexed, with its error telling what is missing."""
    return doc.outcome.error is None or bool(doc.outcome.chunks)
