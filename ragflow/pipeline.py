"""The document pipeline as an engine graph: document changes -> parse + split (once per distinct content)
-> chunk rows -> embed (once per distinct chunk text, cached on disk) -> index sink, applied per epoch."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from .documents import (
    ChangeKind,
    DocumentChange,
    DocumentSource,
    Parser,
    Splitter,
    VectorIndex,
    VectorRecord,
)
from .engine import Change, Engine, FrozenDict, MemoryCache, Table, UdfCache, content_key
from .engine.io import Mode, Push
from .engine.udf import BatchedUdfNode
from .errors import IncompleteParse, ParseError

__all__ = [
    "ChunkRow",
    "DocRow",
    "DocumentFeed",
    "EmbeddedChunk",
    "IndexSink",
    "ParsedDoc",
    "build_pipeline",
    "chunk_keys",
    "document_chunks",
]

log = logging.getLogger("ragflow.pipeline")


def _frozen(metadata: Any) -> FrozenDict:
    """Metadata as a hashable mapping (nested lists/dicts become tuples/FrozenDicts)."""

    def freeze(value: Any) -> Any:
        if isinstance(value, dict | FrozenDict):
            return FrozenDict({k: freeze(v) for k, v in value.items()})
        if isinstance(value, list | tuple):
            return tuple(freeze(v) for v in value)
        return value

    frozen: FrozenDict = freeze(dict(metadata))
    return frozen


@dataclass(frozen=True, slots=True)
class DocRow:
    """A document as the engine sees it. ``data`` travels only with insertions and is not part of the
    row's identity: a retraction (``data=None``) equals the insertion it retracts, and the parse result is
    found by ``digest``. ``source`` (the feed's name) and ``position`` (the source's position attached to
    the change that produced this row) are not part of it either: checkpoints save them with the row."""

    doc_id: str
    digest: str
    metadata: FrozenDict
    error: str | None = None
    data: bytes | None = field(default=None, compare=False, hash=False, repr=False)
    source: str = field(default="", compare=False, hash=False, repr=False)
    position: Any = field(default=None, compare=False, hash=False, repr=False)


@dataclass(frozen=True, slots=True)
class ChunkPiece:
    """A chunk of a parsed document, independent of which document it came from."""

    text: str
    start: int
    end: int
    ordinal: int
    n_tokens: int
    page_number: int | None = None
    location: FrozenDict | None = None
    """The fields its unit adds to the document's metadata to say where it is (``slide``, ``sheet``,
    ``section``...; ``page_number`` is apart), merged into the chunk's own fields."""


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    chunks: tuple[ChunkPiece, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedDoc:
    row: DocRow
    outcome: ParseOutcome


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """A chunk ready to embed: its text, its document's metadata (one shared object per document version,
    what filters see) and its own fields (offsets, ordinal, page) in ``extra``."""

    doc_id: str
    text: str
    metadata: FrozenDict
    extra: FrozenDict


@dataclass(frozen=True, slots=True)
class EmbeddedChunk:
    """A chunk with its vector; identity is the chunk row (the vector is a function of its text)."""

    chunk: ChunkRow
    vector: npt.NDArray[np.float32] = field(compare=False, hash=False, repr=False)


def chunk_id(doc_id: str, page: Any, ordinal: int) -> int:
    """A stable 63-bit id for the ``ordinal``-th chunk of a document page (or other unit: ``page`` is
    then the unit's key, see ``chunk_keys``)."""
    digest = hashlib.blake2b(f"{doc_id}\x00{page}\x00{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def chunk_keys(doc_id: str, pieces: Iterable[ChunkPiece]) -> list[int]:
    """The ids of a document's chunks. A unit is named by its page number (PDF, ids as they always were)
    or by its location fields (``slide=3``), so that editing one slide keeps the ids of the others; a
    location that repeats (two sections with the same heading) is told apart by its occurrence."""
    keys = []
    seen: dict[Any, int] = {}
    unit: Any = None
    for piece in pieces:
        if piece.ordinal == 0 or unit is None:  # the splitter numbers each unit's chunks from 0
            unit = piece.page_number
            if piece.location:
                unit = "\x1f".join(f"{k}={v}" for k, v in sorted({**piece.location, "page": unit}.items()))
            occurrence = seen[unit] = seen.get(unit, -1) + 1
            if occurrence:
                unit = f"{unit}#{occurrence}"
        keys.append(chunk_id(doc_id, unit, piece.ordinal))
    return keys


class DocumentFeed:
    """Adapts a ``DocumentSource`` to the engine: turns document upserts/deletes into row retractions and
    insertions (it remembers each document's current row) and tracks what the source has seen.

    Until the source's snapshot is done, what it emits is pushed in slices of at most ``snapshot_slice``
    documents (each slice one epoch), so a large folder becomes searchable bit by bit instead of after its
    source's whole first listing; a snapshot is not atomic anyway. Changes after the snapshot keep their
    groups whole (a rename stays atomic), unless a group holds more than ``BURST_SLICES`` slices (10,000
    files dropped into a folder at once): it is pushed in slices too, so the burst becomes searchable bit
    by bit (and its progress shows) instead of as one epoch of minutes, with its deletes in its last slice
    so that nothing disappears before what replaces it (a rename's new name) is searchable."""

    def __init__(
        self, source: DocumentSource, position: Any = None, snapshot_slice: int | None = None
    ) -> None:
        if snapshot_slice is not None and snapshot_slice < 1:
            raise ValueError(f"snapshot_slice must be at least 1, got {snapshot_slice}")
        self.source = source
        self.name = source.name
        self.position = position
        self.snapshot_slice = snapshot_slice
        self.resubmit: list[DocRow] = []
        """Saved rows to push once more before the source runs (see ``Pipeline.restore``)."""
        self._unsettled: set[str] = set()  # resubmitted documents the source has not sent a change for
        self._settled: set[str] = set()  # ... and those it has, since the last ``take_settled``
        self.snapshot_done = threading.Event()
        self.before_push: Callable[[Any], None] | None = None
        """Told each push's position just before the push (the store follows pushes with it)."""
        self.current: dict[str, DocRow] = {}
        self.seen_ns: dict[str, int] = {}
        self._unpushed = 0  # see pending()
        self._lock = threading.Lock()
        if hasattr(source, "held_documents"):  # the source asked for it (see ragflow.sources)
            setattr(source, "held_documents", self.held_documents)  # noqa: B010

    def run(self, push: Push, stop: threading.Event, mode: Mode) -> None:
        def emit(changes: Sequence[DocumentChange], snapshot_done: bool = False) -> None:
            size = self.snapshot_slice if not self.snapshot_done.is_set() else None
            if size is None and self.snapshot_slice and len(changes) > BURST_SLICES * self.snapshot_slice:
                size, changes = self.snapshot_slice, _deletes_last(changes)
            for group in _slices(changes, size):
                deltas = self._deltas(group)  # counted as unpushed when it records a change
                if not deltas:
                    continue
                try:
                    if self.before_push is not None:
                        self.before_push(group[-1].position)
                    push(deltas, group[-1].position)
                finally:
                    self._pushed()
            if snapshot_done:
                self.snapshot_done.set()

        rows, self.resubmit = self.resubmit, []
        with self._lock:
            for row in rows:
                self.current[row.doc_id] = row
                self._unsettled.add(row.doc_id)
            self._unpushed += 1 if rows else 0
        step = self.snapshot_slice or max(1, len(rows))
        try:
            for start in range(0, len(rows), step):  # in slices too: searchable (and saved) bit by bit
                push([(row.doc_id, row, 1) for row in rows[start : start + step]], None)
        finally:
            if rows:
                self._pushed()
        try:
            self.source.run(emit, stop, mode, self.position)
        finally:
            self.snapshot_done.set()  # a source that ended (or failed) will not complete a snapshot later

    def _deltas(self, changes: Sequence[DocumentChange]) -> list[tuple[Any, Any, int]]:
        deltas: list[tuple[Any, Any, int]] = []
        with self._lock:
            for change in changes:
                if change.doc_id in self._unsettled:
                    self._unsettled.discard(change.doc_id)
                    self._settled.add(change.doc_id)
                old = self.current.pop(change.doc_id, None)
                if old is not None:
                    deltas.append((change.doc_id, old, -1))
                if change.kind is ChangeKind.UPSERT:
                    row = _row_of(change, self.name)
                    self.current[change.doc_id] = replace(row, data=None)  # keep no bytes in memory
                    deltas.append((change.doc_id, row, 1))
                    self.seen_ns[change.doc_id] = int(change.metadata.get("seen_at_ns") or time.time_ns())
                else:
                    self.seen_ns.pop(change.doc_id, None)
            self._unpushed += 1 if deltas else 0
        return deltas

    def pending(self) -> int:
        """Groups of changes already in ``current`` but not yet pushed to the engine (its source thread is
        between the two). The engine's ``wait_idle`` waits for them, so that "idle" never means "idle but
        about to receive what ``current`` already says": a migration's swap compares ``current`` with the
        serving generation's and then asks the new one whether it is idle (ragflow.store.migrating)."""
        with self._lock:
            return self._unpushed

    def _pushed(self) -> None:
        with self._lock:
            self._unpushed -= 1

    def held_documents(self) -> dict[str, Mapping[str, Any]]:
        """``doc_id -> metadata`` of the documents this feed holds (a ``HeldDocuments`` for its source)."""
        with self._lock:
            return {doc_id: row.metadata for doc_id, row in self.current.items()}

    def take_settled(self) -> set[str]:
        """The resubmitted documents the source sent a change for since the last call. The change may
        cancel the resubmission before anything downstream sees either (a document deleted while the store
        was stopped), so their state must be saved again from what the pipeline holds."""
        with self._lock:
            settled, self._settled = self._settled, set()
        return settled

    def restore(self, row: DocRow) -> None:
        """Take ``row`` (from a checkpoint) as the document's current row, as if the source had sent it."""
        with self._lock:
            self.current[row.doc_id] = row
            seen = row.metadata.get("seen_at_ns")
            if isinstance(seen, int):
                self.seen_ns[row.doc_id] = seen


BURST_SLICES = 4
"""A group of changes after the snapshot holding more than this many slices of documents is sliced."""


def _deletes_last(changes: Sequence[DocumentChange]) -> Sequence[DocumentChange]:
    """``changes`` with the deletes of documents that change once in them moved to the end, when no change
    carries a position (a positioned source's order is its resume point, and is kept)."""
    if any(change.position is not None for change in changes):
        return changes
    counts = Counter(change.doc_id for change in changes)
    last = [c for c in changes if c.kind is ChangeKind.DELETE and counts[c.doc_id] == 1]
    if not last:
        return changes
    moved = {id(change) for change in last}
    return [c for c in changes if id(c) not in moved] + last


def _slices(changes: Sequence[DocumentChange], size: int | None) -> list[Sequence[DocumentChange]]:
    """``changes`` cut into groups of at least ``size`` (all of them when ``None``), each ending with a
    change that carries a position: a slice must leave its source at a position a restart can resume
    from. A source that puts a position only on its last change (a stream source's snapshot) is not cut;
    one that puts none anywhere is cut every ``size`` changes."""
    if size is None or len(changes) <= size:
        return [changes] if changes else []
    # a source that attaches no position at all cannot resume anyway: it may be cut anywhere
    anywhere = all(change.position is None for change in changes)
    groups: list[Sequence[DocumentChange]] = []
    start = 0
    for end, change in enumerate(changes, 1):
        if end - start >= size and (anywhere or change.position is not None):
            groups.append(changes[start:end])
            start = end
    if start < len(changes):
        groups.append(changes[start:])
    return groups


def _row_of(change: DocumentChange, source: str) -> DocRow:
    metadata = _frozen({**change.metadata, "doc_id": change.doc_id})
    if change.error is not None or change.data is None:
        error = change.error or f"source {change.doc_id!r} sent an upsert without content"
        return DocRow(change.doc_id, "", metadata, error, source=source, position=change.position)
    digest = hashlib.blake2b(change.data, digest_size=16).hexdigest()
    return DocRow(change.doc_id, digest, metadata, None, change.data, source, change.position)


class IndexSink:
    """Applies each epoch's chunk changes to the vector index in one atomic ``apply``."""

    def __init__(self, index: VectorIndex, on_applied: Callable[[int, int], None] | None = None) -> None:
        self.index = index
        self.on_applied = on_applied

    def on_epoch(self, epoch: int, changes: list[Change]) -> None:
        upserts: dict[int, EmbeddedChunk] = {}
        retracted: set[int] = set()
        for key, row, diff in changes:
            if diff > 0:
                upserts[key] = row
            else:
                retracted.add(key)
        records = [_vector_record(key, row.chunk, row.vector) for key, row in upserts.items()]
        self.index.apply(records, [key for key in retracted if key not in upserts])
        if self.on_applied is not None:
            self.on_applied(len(records), len(retracted - upserts.keys()))


def _vector_record(key: int, chunk: ChunkRow, vector: npt.NDArray[np.float32]) -> VectorRecord:
    return VectorRecord(key, vector, chunk.text, chunk.metadata, chunk.extra)


def parse_function(parser: Parser, splitter: Splitter) -> Callable[[list[DocRow]], list[ParseOutcome]]:
    """The batched function that turns documents into chunks; a failure is a result, not an exception."""

    def parse_all(rows: list[DocRow]) -> list[ParseOutcome]:
        return [_parse_one(parser, splitter, row) for row in rows]

    return parse_all


def _parse_one(parser: Parser, splitter: Splitter, row: DocRow) -> ParseOutcome:
    if row.error is not None:
        return ParseOutcome(error=row.error)
    if row.data is None:
        return ParseOutcome(
            error=f"content of {row.doc_id!r} is not available (internal: insertion without data)"
        )
    try:
        try:
            units, warning = parser.parse(row.data, row.metadata), None
        except IncompleteParse as exc:  # what could be read is indexed; the rest is the document's error
            units, warning = exc.units, str(exc)
        pieces = []
        for unit in units:
            page = unit.metadata.get("page_number")
            location = _location(unit.metadata, row.metadata)
            for chunk in splitter.split(unit.text):
                pieces.append(
                    ChunkPiece(
                        chunk.text, chunk.start, chunk.end, chunk.ordinal, chunk.n_tokens, page, location
                    )
                )
        if not pieces:
            return ParseOutcome(
                error=warning
                or f"{row.doc_id!r} has no text to index (an empty file, or a PDF without a text layer)"
            )
        return ParseOutcome(tuple(pieces), warning)
    except ParseError as exc:
        return ParseOutcome(error=str(exc))
    except Exception as exc:  # a parser bug must not stop other documents
        log.exception("parser failed on %s", row.doc_id)
        return ParseOutcome(error=f"parser failed on {row.doc_id!r}: {type(exc).__name__}: {exc}")


def document_chunks(
    change: DocumentChange, source: str, parser: Parser, splitter: Splitter
) -> tuple[DocRow, ParseOutcome, list[tuple[int, ChunkRow]]]:
    """One upsert parsed and split exactly as the pipeline does it: the document's row (without its
    bytes), the parse outcome (``error`` set on failure, or beside the chunks of a partial parse) and
    the chunks by id. For processes that index without the engine (``ragflow worker``)."""
    row = _row_of(change, source)
    outcome = _parse_one(parser, splitter, row)
    row = replace(row, data=None)
    return row, outcome, _chunks_of(change.doc_id, ParsedDoc(row, outcome))


def _location(unit: Mapping[str, Any], document: Mapping[str, Any]) -> FrozenDict | None:
    """The fields a parser added to a unit's metadata (other than ``page_number``), or ``None``."""
    added = {k: v for k, v in unit.items() if k != "page_number" and (k not in document or document[k] != v)}
    return _frozen(added) if added else None


def _chunks_of(doc_id: Any, parsed: ParsedDoc) -> list[tuple[int, ChunkRow]]:
    out = []
    metadata = parsed.row.metadata
    pieces = parsed.outcome.chunks
    for key, piece in zip(chunk_keys(doc_id, pieces), pieces, strict=True):
        extra = FrozenDict(start=piece.start, end=piece.end, chunk_ordinal=piece.ordinal)
        if piece.page_number is not None:
            extra = extra.replace(page_number=piece.page_number)
        if piece.location:
            extra = extra.replace(**piece.location)
        out.append((key, ChunkRow(doc_id, piece.text, metadata, extra)))
    return out


@dataclass
class Pipeline:
    """The tables of a built document pipeline."""

    documents: Table
    parsed: Table
    chunks: Table
    embedded: Table

    def cached_vectors(self, texts: Iterable[str]) -> dict[str, npt.NDArray[np.float32]]:
        """The vectors of those chunk ``texts`` that the embedding cache holds (the others are left out)."""
        node = _udf_node(self.embedded)
        if node.cache is None:
            return {}
        # the embed operator's input is the chunk text itself (see build_pipeline)
        keys = {content_key(node.namespace, text): text for text in texts}
        return {keys[key]: vector for key, vector in node.cache.get_many(keys).items()}

    def restore(
        self,
        feeds: Sequence[DocumentFeed],
        docs: Iterable[ParsedDoc],
        vectors: Mapping[str, npt.NDArray[np.float32]],
        resubmitted: Iterable[ParsedDoc] = (),
    ) -> list[VectorRecord]:
        """Put the graph where processing ``docs`` (saved by a checkpoint) would have left it: each doc's
        row in its feed (``row.source``), its parse result and its chunks' vectors (from ``vectors``, which
        must hold every chunk text) remembered by the UDF operators, so that a later retraction emits
        exactly what that processing emitted. Returns the index records of their chunks.

        ``resubmitted`` documents (saved, but some of their vectors are missing) go through the pipeline
        once more when the engine starts, pushed by their feed before its source runs: their saved parse
        result is used (the source need not send them again) and only their missing vectors are computed
        (a chunk that fails again is reported as such). Call it before the engine starts. The distinct
        chunk texts of ``docs`` count as the embed operator's cache hits (their vectors were read from the
        cache)."""
        feeds_by_name = {feed.name: feed for feed in feeds}
        parse, embed = _udf_node(self.parsed), _udf_node(self.embedded)
        assert parse.input_key is not None  # build_pipeline names parse inputs by content digest
        records = []
        known = len(embed.live)
        for doc in docs:
            feeds_by_name[doc.row.source].restore(doc.row)
            _remember(parse, parse.input_key(doc.row), doc.outcome)
            for key, chunk in _chunks_of(doc.row.doc_id, doc):
                vector = vectors[chunk.text]
                _remember(embed, chunk.text, vector)
                records.append(_vector_record(key, chunk, vector))
        embed.cache_hits += len(embed.live) - known
        for doc in resubmitted:
            # a result held for a row about to arrive (count 0): the parser is not called, it has no bytes
            parse.live.setdefault(content_key(parse.namespace, parse.input_key(doc.row)), [doc.outcome, 0])
            feeds_by_name[doc.row.source].resubmit.append(doc.row)
        return records


def _udf_node(table: Table) -> BatchedUdfNode:
    return cast(BatchedUdfNode, table.node)


def _remember(node: BatchedUdfNode, identity: Any, result: Any) -> None:
    """Count one more present row whose input is ``identity`` in the operator's memo (``live``)."""
    entry = node.live.setdefault(content_key(node.namespace, identity), [result, 0])
    entry[1] += 1


_PARSE_CACHE_ENTRIES = 1024
"""Parse results kept in memory after their documents are gone (each holds a document's chunk texts)."""


def build_pipeline(
    engine: Engine,
    feeds: Sequence[DocumentFeed],
    parser: Parser,
    splitter: Splitter,
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
    *,
    model_id: str,
    embed_batch_size: int,
    cache: UdfCache | None,
    parser_id: str,
) -> Pipeline:
    """Wire sources -> parse+split -> chunks -> embed in ``engine``; sinks are the caller's."""
    tables = [engine.source(feed) for feed in feeds]
    documents = tables[0].concat(*tables[1:]) if len(tables) > 1 else tables[0]

    def format_hint(row: DocRow) -> str:
        # what, besides the bytes, picks the format (see DefaultParser.parse): the same bytes declared
        # as HTML and as plain text parse differently, so they must not share a parse result
        metadata = row.metadata
        suffix = PurePosixPath(str(metadata.get("filename") or metadata.get("path", row.doc_id))).suffix
        declared = metadata.get("content_type")
        return f"{suffix.lower()};{declared}" if declared else suffix.lower()

    parsed = documents.map_batched(
        parse_function(parser, splitter),
        batch_size=16,
        input_key=lambda row: (row.digest, format_hint(row), row.error),
        merge=lambda row, outcome: ParsedDoc(replace(row, data=None), outcome),
        # recent parse results outlive their rows for a while: a rename whose delete and create land in
        # different epochs (a large folder's first listing comes in slices) is not parsed again
        cache=MemoryCache(max_entries=_PARSE_CACHE_ENTRIES),
        keep_dropped=True,
        namespace=parser_id,
    )
    chunks = parsed.flat_map(_chunks_of)
    embedded = chunks.map_batched(
        lambda texts: list(embed(texts)),
        batch_size=embed_batch_size,
        input=lambda row: row.text,
        merge=lambda row, vector: EmbeddedChunk(row, vector),
        cache=cache,
        namespace=model_id,
    )
    return Pipeline(documents, parsed, chunks, embedded)
