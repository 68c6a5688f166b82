"""The state file ``<state_dir>/state.sqlite``: its schema, the lock that keeps one store per state
directory, opening it (checking its identity against the store's, setting a damaged file aside), and
writing one checkpoint per transaction (see docs/persistence.md)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..engine.cache import is_sqlite_damage, move_aside
from ..errors import ConfigError
from .records import (
    FORMAT_VERSION,
    STATE_FILE,
    CheckpointBatch,
    CheckpointInfo,
    DamagedState,
    IncompatibleStateError,
    OnIncompatible,
    SavedState,
    StateError,
    StateIdentity,
)
from .rows import decode_document, decode_source, document_row, source_row

__all__ = ["LOCK_FILE", "DirectoryLock", "StateFile", "open_state", "read_state"]

# one logger for the whole package, so that the name people filter on did not change with the split
log = logging.getLogger("ragflow.persistence")

LOCK_FILE = "state.lock"
_KEPT_CHECKPOINTS = 100
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


class DirectoryLock:
    """An exclusive ``flock`` on ``<state_dir>/<name>`` (``state.lock``: one store writes a state directory
    at a time; ``generations.lock``: one server owns its generations). The kernel drops it when the
    process dies, so a crash never leaves the directory locked. ``holder`` names what holds it, for the
    message that refuses a second one."""

    def __init__(self, directory: Path, name: str = LOCK_FILE, holder: str = "DocumentStore") -> None:
        path = directory / name
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise StateError(
                f"the state directory {directory} is in use by another {holder} (process {pid}); "
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

    def __init__(
        self, directory: Path, db: sqlite3.Connection, lock: DirectoryLock, saved: SavedState
    ) -> None:
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
        rows = [document_row(saved) for saved in batch.documents.values() if saved is not None]
        forgotten = [name for name, state in batch.sources.items() if state is None]
        sources = [source_row(name, state) for name, state in batch.sources.items() if state is not None]
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
    if on_incompatible == "migrate":
        raise ConfigError(
            "on_incompatible_state 'migrate' builds a new generation beside the old one, which "
            "'ragflow serve' does (ragflow.store.migrating.MigratingStore, docs/persistence.md); a "
            "DocumentStore alone takes 'refuse' or 'rebuild'"
        )
    if on_incompatible not in ("refuse", "rebuild"):
        raise ConfigError(
            f"on_incompatible_state must be 'refuse', 'rebuild' or 'migrate', got {on_incompatible!r}"
        )
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(directory)
    path = directory / STATE_FILE
    try:
        try:
            db = _connect(path)
            try:
                saved = _load(db, identity, on_incompatible, directory)
            except BaseException:
                db.close()
                raise
        except (sqlite3.DatabaseError, DamagedState) as exc:
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


def read_state(state_dir: str | os.PathLike[str]) -> tuple[dict[str, str], SavedState] | None:
    """The identity (``meta``) and last checkpoint of ``<state_dir>/state.sqlite``, read without taking
    the directory (its store may be running: SQLite's WAL lets this reader see the last committed
    checkpoint). ``None`` when there is no state, or none that can be trusted (damaged, or not
    ``state.sqlite`` at all): what a migration seeds the next generation from, and how it tells that
    the configuration changed."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        db = _connect(path)
    except sqlite3.DatabaseError:
        return None
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables >= _TABLES:
            return None
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format_version") != str(FORMAT_VERSION):
            return meta, SavedState()  # another format: its rows cannot be read by this version
        return meta, _saved_state(db)
    except (sqlite3.DatabaseError, DamagedState):
        return None
    finally:
        db.close()


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
        raise DamagedState(f"integrity check: {'; '.join(problems)}")
    if tables != _TABLES:
        raise DamagedState(f"expected tables {sorted(_TABLES)}, found {sorted(tables)}")
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if not set(identity.meta()) <= meta.keys():
        raise DamagedState(f"meta lacks {sorted(set(identity.meta()) - meta.keys())}")
    differences = _differences(meta, identity)
    if differences:
        message = _incompatible_message(directory, differences)
        if on_incompatible == "refuse":
            raise IncompatibleStateError(message)
        log.warning("%s; discarding it as asked (on_incompatible_state='rebuild')", message.split(". ")[0])
        _reset(db, identity)
        return SavedState()
    return _saved_state(db)


def _saved_state(db: sqlite3.Connection) -> SavedState:
    """What the file holds of the last checkpoint: its documents, its sources' positions and its own row."""
    documents = [
        decode_document(*row) for row in db.execute("SELECT doc_id, source, body, checksum FROM documents")
    ]
    sources = dict(
        decode_source(*row) for row in db.execute("SELECT name, scope, position, checksum FROM sources")
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
    return isinstance(exc, DamagedState) or is_sqlite_damage(exc)
