"""Durable document state for ``DocumentStore``: checkpoints of the parsed documents and of each source's
position in ``<state_dir>/state.sqlite``, verified and loaded on start, so that a restart re-parses and
re-embeds nothing that did not change while it was stopped (see docs/persistence.md).

RagflowError
└── ConfigError
    └── StateError                   the state directory cannot be used as it is
        └── IncompatibleStateError   the state was written for another model, parser/splitter or format
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import pickle
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .engine import UdfCache
from .engine.cache import is_sqlite_damage, move_aside
from .errors import ConfigError
from .pipeline import ChunkPiece, DocRow, ParsedDoc, ParseOutcome

__all__ = [
    "CACHE_FILE",
    "FORMAT_VERSION",
    "STATE_FILE",
    "CheckpointBatch",
    "CheckpointInfo",
    "Checkpointer",
    "IncompatibleStateError",
    "OnIncompatible",
    "PositionScope",
    "SavedDocument",
    "SavedState",
    "SourceState",
    "StateError",
    "StateFile",
    "StateIdentity",
    "TolerantCache",
    "describe_state",
    "human_size",
    "open_state",
    "position_scope",
]

log = logging.getLogger("ragflow.persistence")

FORMAT_VERSION = 1
"""Bumped whenever what ``state.sqlite`` holds changes meaning; an older or newer file is incompatible."""
STATE_FILE = "state.sqlite"
CACHE_FILE = "embeddings.sqlite"
LOCK_FILE = "state.lock"
_KEPT_CHECKPOINTS = 100
_MAX_RETRY_SECONDS = 30.0
_TABLES = frozenset({"meta", "documents", "sources", "checkpoints"})
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE documents (doc_id TEXT PRIMARY KEY, source TEXT NOT NULL, chunks INTEGER NOT NULL,"
    " positioned INTEGER NOT NULL, body BLOB NOT NULL, checksum BLOB NOT NULL)",
    # covers per-source counts (describe_state) without reading the bodies
    "CREATE INDEX documents_by_source ON documents (source, chunks, positioned)",
    "CREATE TABLE sources (name TEXT PRIMARY KEY, scope TEXT NOT NULL, position BLOB NOT NULL,"
    " checksum BLOB NOT NULL)",
    "CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY AUTOINCREMENT, epoch INTEGER NOT NULL,"
    " written_at REAL NOT NULL, documents INTEGER NOT NULL, chunks INTEGER NOT NULL)",
)
_SQLITE_FULL = 13

PositionScope = Literal["document", "stream"]
"""How a source's change positions add up to the position it resumes from (see ``position_scope``)."""
OnIncompatible = Literal["refuse", "rebuild"]


class StateError(ConfigError):
    """The state directory cannot be used: in use by another store, unreadable, or incompatible."""


class IncompatibleStateError(StateError):
    """The state directory was written for another embedding model, parser/splitter or format version."""


@dataclass(frozen=True, slots=True)
class StateIdentity:
    """What saved documents are only valid for: the same chunks under another splitter, or vectors of
    another model, would make a wrong index."""

    model_id: str
    dim: int
    parser_id: str

    def meta(self) -> dict[str, str]:
        return {
            "format_version": str(FORMAT_VERSION),
            "model_id": self.model_id,
            "dim": str(self.dim),
            "parser_id": self.parser_id,
        }


@dataclass(frozen=True, slots=True)
class SavedDocument:
    """A document as a checkpoint keeps it: its row (no bytes; with its source and position) and parse
    result, and when it became searchable."""

    doc: ParsedDoc
    indexed_at: float | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source's saved position, for sources whose positions are cumulative (``"stream"`` scope)."""

    scope: PositionScope
    position: Any = None


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    seq: int
    epoch: int
    written_at: float
    documents: int
    chunks: int


@dataclass
class SavedState:
    """What ``open_state`` found: the documents and source positions of the last checkpoint."""

    documents: list[SavedDocument] = field(default_factory=list)
    sources: dict[str, SourceState] = field(default_factory=dict)
    last_checkpoint: CheckpointInfo | None = None


@dataclass
class CheckpointBatch:
    """Changes not yet written: the newest value per document (``None``: deleted) and per source
    (``None``: forget it) wins."""

    epoch: int = 0
    documents: dict[str, SavedDocument | None] = field(default_factory=dict)
    sources: dict[str, SourceState | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.documents or self.sources)

    def update(self, newer: CheckpointBatch) -> None:
        self.epoch = max(self.epoch, newer.epoch)
        self.documents.update(newer.documents)
        self.sources.update(newer.sources)


def position_scope(source: object) -> PositionScope:
    """How ``source``'s change positions add up to the position it resumes from.

    ``"document"``: each change's position is the state of that one document (the folder source's file
    fingerprints); the source resumes from the mapping ``doc_id -> position`` of the documents it holds.
    ``"stream"``: each position is the whole source's state after the change (a Kafka offset); the source
    resumes from the last one. A source says which with a ``position_scope`` attribute; ``"document"``
    without one.
    """
    scope = getattr(source, "position_scope", "document")
    if scope == "document":
        return "document"
    if scope == "stream":
        return "stream"
    name = getattr(source, "name", type(source).__name__)
    raise ConfigError(f"source {name!r} has position_scope {scope!r}; use 'document' or 'stream'")


class _DamagedState(Exception):
    """The state file cannot be trusted (set aside and rebuilt)."""


class _DirLock:
    """An exclusive ``flock`` on ``<state_dir>/state.lock``: one store writes a state directory at a time.
    The kernel drops it when the process dies, so a crash never leaves the directory locked."""

    def __init__(self, directory: Path) -> None:
        path = directory / LOCK_FILE
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise StateError(
                f"the state directory {directory} is in use by another DocumentStore (process {holder}); "
                "stop that one first (DocumentStore.stop), or give this one another state_dir (--state-dir)"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class StateFile:
    """An open ``state.sqlite``: verified and loaded by ``open_state``, then written one checkpoint (one
    transaction) at a time by ``write``. Thread-safe."""

    def __init__(self, directory: Path, db: sqlite3.Connection, lock: _DirLock, saved: SavedState) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self._db: sqlite3.Connection | None = db
        self._dir_lock = lock
        self._lock = threading.Lock()
        self._chunks = {s.doc.row.doc_id: len(s.doc.outcome.chunks) for s in saved.documents}
        self._total_chunks = sum(self._chunks.values())
        self.last_checkpoint = saved.last_checkpoint

    def write(self, batch: CheckpointBatch) -> CheckpointInfo:
        """Commit ``batch`` as the next checkpoint, all or nothing (a crash or error in the middle leaves
        the previous checkpoint)."""
        deleted = [doc_id for doc_id, saved in batch.documents.items() if saved is None]
        rows = [_document_row(saved) for saved in batch.documents.values() if saved is not None]
        forgotten = [name for name, state in batch.sources.items() if state is None]
        sources = [_source_row(name, state) for name, state in batch.sources.items() if state is not None]
        chunks = dict(self._chunks_after(batch))  # doc_id -> its chunk count after the batch (None: gone)
        added = sum(1 for doc_id, n in chunks.items() if n is not None and doc_id not in self._chunks)
        removed = sum(1 for n in chunks.values() if n is None)
        documents = len(self._chunks) + added - removed
        total = self._total_chunks + sum(
            (n or 0) - self._chunks.get(doc_id, 0) for doc_id, n in chunks.items()
        )
        with self._lock:
            db = self._open_db()
            with _transaction(db):
                self._write_rows(db, deleted, rows, forgotten, sources)
                now = time.time()
                seq = db.execute(
                    "INSERT INTO checkpoints (epoch, written_at, documents, chunks) VALUES (?, ?, ?, ?)",
                    (batch.epoch, now, documents, total),
                ).lastrowid
                assert seq is not None
                db.execute("DELETE FROM checkpoints WHERE seq <= ?", (seq - _KEPT_CHECKPOINTS,))
            for doc_id, n in chunks.items():
                if n is None:
                    self._chunks.pop(doc_id, None)
                else:
                    self._chunks[doc_id] = n
            self._total_chunks = total
            self.last_checkpoint = CheckpointInfo(seq, batch.epoch, now, documents, total)
            return self.last_checkpoint

    def _chunks_after(self, batch: CheckpointBatch) -> Iterable[tuple[str, int | None]]:
        for doc_id, saved in batch.documents.items():
            if saved is not None:
                yield doc_id, len(saved.doc.outcome.chunks)
            elif doc_id in self._chunks:
                yield doc_id, None

    def _write_rows(
        self,
        db: sqlite3.Connection,
        deleted: list[str],
        rows: list[tuple[Any, ...]],
        forgotten: list[str],
        sources: list[tuple[Any, ...]],
    ) -> None:
        """The statements of one checkpoint, inside its transaction."""
        db.executemany("DELETE FROM documents WHERE doc_id = ?", [(doc_id,) for doc_id in deleted])
        db.executemany(
            "INSERT OR REPLACE INTO documents (doc_id, source, chunks, positioned, body, checksum)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany("DELETE FROM sources WHERE name = ?", [(name,) for name in forgotten])
        db.executemany(
            "INSERT OR REPLACE INTO sources (name, scope, position, checksum) VALUES (?, ?, ?, ?)", sources
        )

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError(f"the state file {self.path} is closed")
        return self._db

    def close(self) -> None:
        """Close the file and release the state directory."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()
            self._dir_lock.release()


def open_state(
    state_dir: str | os.PathLike[str],
    identity: StateIdentity,
    on_incompatible: OnIncompatible = "refuse",
) -> tuple[StateFile, SavedState]:
    """Open (or create) ``<state_dir>/state.sqlite`` for ``identity`` and load its last checkpoint.

    A file that fails SQLite's ``quick_check`` or a row checksum (truncated, overwritten) is moved aside
    to ``state.sqlite.corrupt-<time>`` with an error in the log, and an empty state is used instead: the
    sources and the embedding cache rebuild the index, never from a half-trusted file.

    Raises:
        IncompatibleStateError: the state was written for another model, dimension, parser/splitter or
            format, and ``on_incompatible`` is ``"refuse"``; with ``"rebuild"`` it is emptied instead.
        ConfigError: another store holds the directory, or the file cannot be opened at all.
    """
    if on_incompatible not in ("refuse", "rebuild"):
        raise ConfigError(f"on_incompatible_state must be 'refuse' or 'rebuild', got {on_incompatible!r}")
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lock = _DirLock(directory)
    path = directory / STATE_FILE
    try:
        try:
            db = _connect(path)
            try:
                saved = _load(db, identity, on_incompatible, directory)
            except BaseException:
                db.close()
                raise
        except (sqlite3.DatabaseError, _DamagedState) as exc:
            if not _is_damage(exc):
                raise StateError(f"cannot open the state file {path}: {exc}") from exc
            aside = move_aside(path)
            log.error(
                "the state file %s is damaged (%s); moved it to %s and rebuilding the index from the sources "
                "and the embedding cache",
                path,
                exc,
                aside,
            )
            db = _connect(path)
            saved = _load(db, identity, on_incompatible, directory)
    except BaseException:
        lock.release()
        raise
    return StateFile(directory, db, lock, saved), saved


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # one fsync per checkpoint (at most one per checkpoint_interval): a checkpoint survives power loss too
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


def _load(
    db: sqlite3.Connection, identity: StateIdentity, on_incompatible: OnIncompatible, directory: Path
) -> SavedState:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if not tables:
        _initialise(db, identity)
        return SavedState()
    problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise _DamagedState(f"integrity check: {'; '.join(problems)}")
    if tables != _TABLES:
        raise _DamagedState(f"expected tables {sorted(_TABLES)}, found {sorted(tables)}")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if not set(identity.meta()) <= meta.keys():
        raise _DamagedState(f"meta lacks {sorted(set(identity.meta()) - meta.keys())}")
    differences = _differences(meta, identity)
    if differences:
        message = _incompatible_message(directory, differences)
        if on_incompatible == "refuse":
            raise IncompatibleStateError(message)
        log.warning("%s; discarding it as asked (on_incompatible_state='rebuild')", message.split(". ")[0])
        _reset(db, identity)
        return SavedState()
    documents = [
        _decode_document(*row) for row in db.execute("SELECT doc_id, source, body, checksum FROM documents")
    ]
    sources = dict(
        _decode_source(*row) for row in db.execute("SELECT name, scope, position, checksum FROM sources")
    )
    last = db.execute(
        "SELECT seq, epoch, written_at, documents, chunks FROM checkpoints ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return SavedState(documents, sources, CheckpointInfo(*last) if last is not None else None)


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back if it raises (a failed COMMIT,
    say on a full disk, leaves the transaction open: every later write would fail)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _initialise(db: sqlite3.Connection, identity: StateIdentity) -> None:
    with _transaction(db):
        for statement in _SCHEMA:
            db.execute(statement)
        _write_meta(db, identity)


def _reset(db: sqlite3.Connection, identity: StateIdentity) -> None:
    with _transaction(db):
        for table in ("documents", "sources", "checkpoints", "meta"):
            db.execute(f"DELETE FROM {table}")
        _write_meta(db, identity)


def _write_meta(db: sqlite3.Connection, identity: StateIdentity) -> None:
    meta = {**identity.meta(), "created_at": repr(time.time())}
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())


_META_LABELS = {
    "format_version": "state format version",
    "model_id": "embedding model",
    "dim": "embedding dimension",
    "parser_id": "parser/splitter",
}


def _differences(meta: Mapping[str, str], identity: StateIdentity) -> list[tuple[str, str, str]]:
    current = identity.meta()
    if meta["format_version"] != current["format_version"]:
        return [("format_version", meta["format_version"], current["format_version"])]
    return [(key, meta[key], value) for key, value in current.items() if meta[key] != value]


def _incompatible_message(directory: Path, differences: list[tuple[str, str, str]]) -> str:
    described = ", ".join(
        f"{_META_LABELS[key]} {saved!r} (this store: {current!r})" for key, saved, current in differences
    )
    return (
        f"the state in {directory} was written with {described}. Its saved documents and positions do not "
        "fit this store and would give a wrong index. Use another state directory (--state-dir, "
        "persistence.state_dir), or rebuild it (persistence.on_incompatible_state: rebuild in the "
        "configuration, on_incompatible_state='rebuild' in Python) to discard them and index the sources "
        "again (embeddings already cached for this model are reused)"
    )


def _is_damage(exc: BaseException) -> bool:
    return isinstance(exc, _DamagedState) or is_sqlite_damage(exc)


# -- encoding -----------------------------------------------------------------------------------------------


def _checksum(*parts: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=16, person=b"ragflow-state")
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


def _document_row(saved: SavedDocument) -> tuple[str, str, int, int, bytes, bytes]:
    row, outcome = saved.doc.row, saved.doc.outcome
    chunks = tuple((c.text, c.start, c.end, c.ordinal, c.n_tokens, c.page_number) for c in outcome.chunks)
    fields = (row.digest, row.metadata, row.error, outcome.error, chunks, saved.indexed_at)
    try:
        body = pickle.dumps((*fields, row.position), protocol=5)
        positioned = row.position is not None
    except Exception:  # a position pickle cannot store: the source re-reads that document on resume
        body = pickle.dumps((*fields, None), protocol=5)
        positioned = False
    return (
        row.doc_id,
        row.source,
        len(chunks),
        int(positioned),
        body,
        _checksum(row.doc_id.encode(), row.source.encode(), body),
    )


def _decode_document(doc_id: str, source: str, body: bytes, checksum: bytes) -> SavedDocument:
    if _checksum(doc_id.encode(), source.encode(), body) != checksum:
        raise _DamagedState(f"checksum mismatch in the saved document {doc_id!r}")
    try:
        digest, metadata, error, parse_error, chunks, indexed_at, position = pickle.loads(body)
        row = DocRow(doc_id, digest, metadata, error, source=source, position=position)
        outcome = ParseOutcome(tuple(ChunkPiece(*chunk) for chunk in chunks), parse_error)
    except Exception as exc:
        raise _DamagedState(f"the saved document {doc_id!r} cannot be read: {exc}") from exc
    return SavedDocument(ParsedDoc(row, outcome), indexed_at)


def _source_row(name: str, state: SourceState) -> tuple[str, str, bytes, bytes]:
    position = pickle.dumps(state.position, protocol=5)
    return name, state.scope, position, _checksum(name.encode(), state.scope.encode(), position)


def _decode_source(name: str, scope: str, position: bytes, checksum: bytes) -> tuple[str, SourceState]:
    if _checksum(name.encode(), scope.encode(), position) != checksum or scope not in ("document", "stream"):
        raise _DamagedState(f"checksum mismatch in the saved position of source {name!r}")
    try:
        return name, SourceState(scope, pickle.loads(position))  # type: ignore[arg-type]
    except Exception as exc:
        raise _DamagedState(f"the saved position of source {name!r} cannot be read: {exc}") from exc


# -- checkpointing ------------------------------------------------------------------------------------------


class Checkpointer:
    """Buffers each epoch's document changes and source positions (``add``, cheap, from the engine's
    thread) and commits them to the state file in one transaction at most every ``interval`` seconds, or
    sooner once ``max_pending`` documents wait, from its own thread, and on ``flush``/``close``.

    A failed commit (a full disk) is logged with what to do, keeps the previous checkpoint, and is retried
    with backoff while the changes keep accumulating; indexing and queries never wait for it.
    """

    def __init__(
        self,
        state: StateFile,
        interval: float = 1.0,
        max_pending: int = 5000,
        before_write: Callable[[], object] | None = None,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"checkpoint_interval must be a positive number of seconds, got {interval}")
        self.state = state
        self.before_write = before_write
        self.interval = interval
        self.max_pending = max_pending
        self._pending = CheckpointBatch()
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._ignored_after_close = False
        self.checkpoints = 0
        self.write_seconds = 0.0
        self.documents_written = 0

    def add(self, batch: CheckpointBatch) -> None:
        """Queue ``batch`` (one epoch's changes) for the next checkpoint."""
        if self._closed.is_set():
            if batch and not self._ignored_after_close:
                self._ignored_after_close = True
                log.warning("changes after the store stopped are not saved in %s", self.state.path)
            return
        with self._pending_lock:
            self._pending.update(batch)
            size = len(self._pending.documents)
        if size >= self.max_pending and not self._failures:
            self._wake.set()

    def start(self) -> None:
        """Write checkpoints from a background thread until ``close``."""
        if self._thread is None and not self._closed.is_set():
            self._thread = threading.Thread(target=self._run, name="ragflow-checkpoint", daemon=True)
            self._thread.start()

    def flush(self) -> bool:
        """Write what is pending now, in this thread; ``False`` if that failed (it stays pending)."""
        with self._write_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, CheckpointBatch()
            if not batch:
                return True
            started = time.perf_counter()
            try:
                if self.before_write is not None:
                    self.before_write()
                info = self.state.write(batch)
            except Exception as exc:
                with self._pending_lock:
                    batch.update(self._pending)  # changes queued meanwhile are newer
                    self._pending = batch
                self._report_failure(exc)
                return False
            self.write_seconds += time.perf_counter() - started
            self.checkpoints += 1
            self.documents_written += len(batch.documents)
            if self._failures:
                log.info("checkpoint to %s succeeded again (epoch %d)", self.state.path, info.epoch)
                self._failures = 0
            return True

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called (the state file is closed and its directory released)."""
        return self._closed.is_set()

    def pending(self) -> int:
        """Documents changed since the last checkpoint."""
        with self._pending_lock:
            return len(self._pending.documents)

    def stats(self) -> dict[str, Any]:
        """``last_checkpoint`` (Unix seconds or ``None``), ``checkpoints`` written by this process,
        ``failures`` in a row (0 once a checkpoint succeeds again), ``pending_documents`` and
        ``write_seconds`` (total time spent writing)."""
        last = self.state.last_checkpoint
        return {
            "last_checkpoint": last.written_at if last is not None else None,
            "checkpoints": self.checkpoints,
            "failures": self._failures,
            "pending_documents": self.pending(),
            "write_seconds": self.write_seconds,
        }

    def close(self) -> None:
        """Stop the thread, write what is pending, close the state file (and release its directory)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        finally:
            self.state.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self._delay())
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.flush()
            except Exception:  # never let the thread die: the next round retries
                log.exception("unexpected error while writing a checkpoint to %s", self.state.path)

    def _delay(self) -> float:
        """Seconds until the next checkpoint: the interval, doubled after each failure up to 30 s."""
        return min(self.interval * 2 ** min(self._failures, 16), max(self.interval, _MAX_RETRY_SECONDS))

    def _report_failure(self, exc: BaseException) -> None:
        self._failures += 1
        if self._failures > 1 and self._failures % 10:
            return  # said already; repeat it now and then while it lasts
        last = self.state.last_checkpoint
        kept = (
            f"the checkpoint of epoch {last.epoch} written {time.time() - last.written_at:.0f} s ago"
            if last is not None
            else "no checkpoint yet"
        )
        retry = self._delay()
        log.error(
            "checkpoint to %s failed (attempt %d): %s. Kept %s; indexing and queries go on, and the "
            "checkpoint is retried in %.0f s",
            self.state.path,
            self._failures,
            _failure_reason(exc, self.state.directory),
            kept,
            retry,
        )


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(exc)


def _failure_reason(exc: BaseException, directory: Path) -> str:
    if not _is_disk_full(exc):
        return f"{type(exc).__name__}: {exc}"
    try:
        free = f"{human_size(shutil.disk_usage(directory).free)} free"
    except OSError:
        free = "free space unknown"
    return (
        f"no space to write in {directory} ({free} on its file system; SQLite said: {exc}); free some "
        "space there or move the state directory (--state-dir)"
    )


def human_size(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``3.2 KiB``, ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class TolerantCache:
    """A ``UdfCache`` whose failed writes (a full disk) are logged, not raised, so indexing goes on: the
    results it could not save (at most ``max_unsaved``) are kept and saved with the next write or
    ``save_unsaved`` (the checkpointer calls it before each checkpoint). A result that is never saved only
    costs a recomputation: a restore re-checks that every vector it needs is in the cache and computes
    the missing ones again (``DocumentStore._restore``)."""

    def __init__(self, inner: UdfCache, where: Path, max_unsaved: int = 50_000) -> None:
        self.inner = inner
        self.where = where
        self.max_unsaved = max_unsaved
        self._unsaved: dict[bytes, Any] = {}
        self._lock = threading.Lock()
        self._failed_at = -float("inf")

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, Any]:
        return self.inner.get_many(keys)

    def put_many(self, items: Mapping[bytes, Any]) -> None:
        with self._lock:
            self._unsaved.update(items)
            self._save()

    def save_unsaved(self) -> bool:
        """Try again to save what earlier writes could not; ``False`` if some is still unsaved."""
        with self._lock:
            return self._save()

    def _save(self) -> bool:
        if not self._unsaved:
            return True
        try:
            self.inner.put_many(self._unsaved)
        except (sqlite3.Error, OSError) as exc:
            now = time.monotonic()
            if now - self._failed_at > 60:
                log.error(
                    "cannot save %d embeddings in %s: %s; they are kept in memory (at most %d) and saved "
                    "with a later write",
                    len(self._unsaved),
                    self.where,
                    _failure_reason(exc, self.where.parent),
                    self.max_unsaved,
                )
            self._failed_at = now
            for key in list(self._unsaved)[: max(0, len(self._unsaved) - self.max_unsaved)]:
                del self._unsaved[key]  # the oldest go: a restart recomputes them if it needs them
            return False
        if self._failed_at > -float("inf"):
            log.info("saved the %d embeddings kept in memory to %s", len(self._unsaved), self.where)
            self._failed_at = -float("inf")
        self._unsaved.clear()
        return True

    def __len__(self) -> int:
        return len(self.inner)


# -- status -------------------------------------------------------------------------------------------------


def describe_state(state_dir: str | os.PathLike[str], *, check_integrity: bool = False) -> dict[str, Any]:
    """What a state directory holds, read without changing it (safe while a store runs on it); for
    ``ragflow status --state-dir``.

    Returns a JSON-serialisable dict: ``state_dir``, ``exists``, ``format_version``, ``model_id``,
    ``dim``, ``parser_id``, ``documents``, ``chunks``, ``sources`` (name -> ``scope``, ``documents``,
    ``chunks``, ``positions``: documents carrying a per-document position, ``position``: the saved
    position of a ``"stream"`` source, as text), ``last_checkpoint`` (``epoch``, ``time`` in Unix
    seconds, ``age_seconds``) or ``None``, ``checkpoints`` kept, ``state_bytes``, ``cache`` (``entries``,
    ``bytes``), and ``problem``: ``None``, or why the state cannot be read (a start would rebuild it).
    With ``check_integrity``, also runs SQLite's ``quick_check`` (reads the whole file).

    Example:
        >>> describe_state("/nonexistent")["exists"]
        False
    """
    directory = Path(state_dir)
    path = directory / STATE_FILE
    cache_path = directory / CACHE_FILE
    result: dict[str, Any] = {
        "state_dir": str(directory),
        "exists": path.exists(),
        "format_version": None,
        "model_id": None,
        "dim": None,
        "parser_id": None,
        "documents": 0,
        "chunks": 0,
        "sources": {},
        "last_checkpoint": None,
        "checkpoints": 0,
        "state_bytes": _files_size(path),
        "cache": {"entries": _cache_entries(cache_path), "bytes": _files_size(cache_path)},
        "problem": None,
    }
    if not path.exists():
        return result
    try:
        with contextlib.closing(_connect_read_only(path)) as db:
            _describe_into(result, db, check_integrity)
    except (sqlite3.Error, _DamagedState) as exc:
        result["problem"] = str(exc)
    return result


def _describe_into(result: dict[str, Any], db: sqlite3.Connection, check_integrity: bool) -> None:
    if check_integrity:
        problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise _DamagedState(f"integrity check: {'; '.join(problems)}")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    version = meta.get("format_version")
    result["format_version"] = int(version) if version is not None and version.isdigit() else version
    result["model_id"] = meta.get("model_id")
    result["dim"] = int(meta["dim"]) if meta.get("dim", "").isdigit() else meta.get("dim")
    result["parser_id"] = meta.get("parser_id")
    sources: dict[str, dict[str, Any]] = {}
    for name, documents, chunks, positioned in db.execute(
        "SELECT source, COUNT(*), COALESCE(SUM(chunks), 0), SUM(positioned) FROM documents GROUP BY source"
    ):
        sources[name] = {
            "scope": "document",
            "documents": documents,
            "chunks": chunks,
            "positions": positioned,
        }
        result["documents"] += documents
        result["chunks"] += chunks
    for name, scope, position in db.execute("SELECT name, scope, position FROM sources"):
        entry = sources.setdefault(name, {"documents": 0, "chunks": 0, "positions": 0})
        entry["scope"] = scope
        if scope == "stream":
            entry["position"] = _position_text(position)
    result["sources"] = sources
    last = db.execute("SELECT epoch, written_at FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
    if last is not None:
        epoch, written_at = last
        result["last_checkpoint"] = {
            "epoch": epoch,
            "time": written_at,
            "age_seconds": round(time.time() - written_at, 3),
        }
    (result["checkpoints"],) = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)


def _position_text(blob: bytes) -> str:
    try:
        return repr(pickle.loads(blob))[:200]
    except Exception as exc:
        return f"<unreadable: {exc}>"


def _cache_entries(path: Path) -> int | None:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(_connect_read_only(path)) as db:
            (count,) = db.execute("SELECT COUNT(*) FROM results").fetchone()
            return int(count)
    except sqlite3.Error:
        return None


def _files_size(path: Path) -> int:
    """The size of an SQLite file with its write-ahead log."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += path.with_name(path.name + suffix).stat().st_size
    return total
