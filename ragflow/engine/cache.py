"""Content-addressed caches for the batched-UDF operator: an in-memory LRU and an on-disk SQLite store,
so that an input computed once is never computed again, also after a restart."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = ["DiskCache", "MemoryCache", "UdfCache", "content_key"]

log = logging.getLogger("ragflow.engine.cache")

_MAGIC = b"rfc1"
"""Starts every stored value: the format (a checksum, then the pickle). Values without it are not read."""
_DAMAGED = object()


def content_key(namespace: str, value: Any) -> bytes:
    """A 32-byte digest naming ``value`` within ``namespace`` (e.g. a model id): equal inputs, equal keys."""
    payload = value.encode() if isinstance(value, str) else pickle.dumps(_canonical(value), protocol=5)
    return hashlib.blake2b(payload, digest_size=32, person=b"ragflow-udf").digest() + _namespace_digest(
        namespace
    )


@functools.lru_cache(maxsize=256)
def _namespace_digest(namespace: str) -> bytes:
    return hashlib.blake2b(namespace.encode(), digest_size=8).digest()


def _canonical(value: Any) -> Any:
    """``value`` with mappings and sets in a fixed order, so equal values pickle equally in every process
    (set order depends on ``PYTHONHASHSEED``; dict order on insertion)."""
    if isinstance(value, Mapping):
        items = ((_canonical(k), _canonical(v)) for k, v in value.items())
        return ("<mapping>", tuple(sorted(items, key=repr)))
    if isinstance(value, set | frozenset):
        return ("<set>", tuple(sorted((_canonical(v) for v in value), key=repr)))
    if isinstance(value, tuple | list):
        return type(value)(_canonical(v) for v in value)
    return value


class UdfCache(Protocol):
    """Where computed UDF results are kept, by content key."""

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, Any]: ...

    def put_many(self, items: Mapping[bytes, Any]) -> None: ...

    def __len__(self) -> int: ...


class MemoryCache:
    """An LRU cache holding at most ``max_entries`` results."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, Any]:
        found = {}
        with self._lock:
            for key in keys:
                if key in self._items:
                    self._items.move_to_end(key)
                    found[key] = self._items[key]
        return found

    def put_many(self, items: Mapping[bytes, Any]) -> None:
        with self._lock:
            self._items.update(items)
            for key in items:
                self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class DiskCache:
    """Results pickled into one SQLite table (WAL mode) at ``path``; safe to share between threads.

    Every value is stored behind a checksum of its key and bytes, so a damaged entry (a flipped bit) is
    never returned: it reads as a miss (the result is computed again) and is deleted. When SQLite finds the
    file itself damaged while reading or writing, the entries that can still be read are copied into a new
    file and the damaged one is moved aside to ``<path>.corrupt-<time>``; a file that is not a readable
    SQLite database at all is moved aside and a new one started. Each is logged as an error: a cache costs
    recomputation when lost, never correctness.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._warned = False
        try:
            self._db = _open_cache_db(self.path)
        except sqlite3.DatabaseError as exc:
            if not is_sqlite_damage(exc):
                raise
            aside = move_aside(self.path)
            log.error(
                "the cache %s cannot be read (%s); moved it to %s and starting an empty one: what it held "
                "is computed again when needed",
                self.path,
                exc,
                aside,
            )
            self._db = _open_cache_db(self.path)

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, Any]:
        wanted = list(keys)
        with self._lock:
            try:
                return self._read(wanted)
            except sqlite3.DatabaseError as exc:
                if not is_sqlite_damage(exc):
                    raise
                self._salvage(exc)
                return self._read(wanted)

    def put_many(self, items: Mapping[bytes, Any]) -> None:
        rows = []
        for key, value in items.items():
            try:
                rows.append((key, _seal(key, pickle.dumps(value, protocol=5))))
            except Exception:  # a result pickle cannot store is used, just not remembered across runs
                continue
        with self._lock:
            try:
                self._write(rows)
            except sqlite3.DatabaseError as exc:
                if not is_sqlite_damage(exc):
                    raise
                self._salvage(exc)
                self._write(rows)

    def _read(self, wanted: list[bytes]) -> dict[bytes, Any]:
        found: dict[bytes, Any] = {}
        damaged: list[bytes] = []
        for start in range(0, len(wanted), 500):  # SQLite caps bound parameters per statement
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", part)
            for raw_key, value in rows:
                key = bytes(raw_key)
                result = _unseal(key, bytes(value))
                if result is _DAMAGED:
                    damaged.append(key)
                else:
                    found[key] = result
        if damaged:
            self._warn(f"{len(damaged)} entries failed their checksum and were dropped")
            with contextlib.suppress(sqlite3.Error):
                self._db.executemany("DELETE FROM results WHERE key = ?", [(key,) for key in damaged])
        return found

    def _write(self, rows: list[tuple[bytes, bytes]]) -> None:
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            # a failed COMMIT (full disk) leaves the transaction open: every later write would fail
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def _salvage(self, exc: BaseException) -> None:
        """(lock held) The file is damaged: copy every entry that can still be read into a new file, set
        the damaged one aside and go on with the new one. If the copy cannot be made (no space for it),
        the damaged file is set aside all the same and an empty cache starts: a lost cache only costs
        recomputation, and a damaged one must not be tried again at every lookup."""
        salvage = self.path.with_name(self.path.name + ".salvage")
        _remove_with_companions(salvage)
        copied: int | None = 0
        try:
            copied = _copy_readable(self._db, salvage)
        except (sqlite3.Error, OSError) as copy_error:
            _remove_with_companions(salvage)
            log.error("cannot salvage the damaged cache %s: %s", self.path, copy_error)
            copied = None
        self._db.close()
        aside = move_aside(self.path)
        if copied is not None:
            os.replace(salvage, self.path)
        self._db = _open_cache_db(self.path)
        kept = (
            f"kept the {copied} entries that could still be read" if copied is not None else "started empty"
        )
        log.error(
            "the cache %s is damaged (%s): moved it to %s and %s; the others are computed again when needed",
            self.path,
            exc,
            aside,
            kept,
        )

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("the cache %s is damaged: %s; those results are computed again", self.path, what)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _open_cache_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, value BLOB NOT NULL)")
    except BaseException:
        db.close()
        raise
    return db


def _copy_readable(db: sqlite3.Connection, path: Path) -> int:
    """Copy the readable rows of the damaged cache ``db`` into a new cache at ``path``; how many."""
    copied = 0
    new = _open_cache_db(path)
    try:
        for rows in _readable_rows(db):
            new.execute("BEGIN")
            new.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", rows)
            new.execute("COMMIT")
            copied += len(rows)
        new.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        new.close()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return copied


def _remove_with_companions(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _readable_rows(db: sqlite3.Connection, step: int = 256) -> Iterator[list[tuple[bytes, bytes]]]:
    """The rows of a damaged cache that can still be read, by ranges of rowids: a range on a damaged page
    is read row by row. Without a readable largest rowid (the damage is at the end of the table), ranges
    are read until 16 in a row yield nothing."""
    try:
        (top,) = db.execute("SELECT max(rowid) FROM results").fetchone()
    except sqlite3.DatabaseError:
        top = -1
    if top is None:
        return
    low, empty = 0, 0
    while (low <= top) if top >= 0 else (empty < 16):
        try:
            rows = db.execute(
                "SELECT key, value FROM results WHERE rowid >= ? AND rowid < ?", (low, low + step)
            ).fetchall()
        except sqlite3.DatabaseError:
            rows = []
            for rowid in range(low, low + step):  # the range touches a damaged page: row by row
                with contextlib.suppress(sqlite3.DatabaseError):
                    rows += db.execute("SELECT key, value FROM results WHERE rowid = ?", (rowid,)).fetchall()
        empty = 0 if rows else empty + 1
        if rows:
            yield rows
        low += step


def _seal(key: bytes, payload: bytes) -> bytes:
    return _MAGIC + _value_checksum(key, payload) + payload


def _unseal(key: bytes, value: bytes) -> Any:
    """The result stored in ``value``, or ``_DAMAGED`` when it fails its checksum or cannot be read. A
    value written before checksums existed (a bare pickle) is read as it is: it cannot be verified, but
    an upgrade must not throw away a whole cache of embeddings."""
    head = len(_MAGIC) + 16
    if value[: len(_MAGIC)] != _MAGIC:
        try:
            return pickle.loads(value) if value[:1] == b"\x80" else _DAMAGED  # pickle protocol 2+ header
        except Exception:
            return _DAMAGED
    payload = value[head:]
    if value[len(_MAGIC) : head] != _value_checksum(key, payload):
        return _DAMAGED
    try:
        return pickle.loads(payload)
    except Exception:
        return _DAMAGED


def _value_checksum(key: bytes, payload: bytes) -> bytes:
    digest = hashlib.blake2b(key, digest_size=16, person=b"ragflow-cache")
    digest.update(payload)
    return digest.digest()


def is_sqlite_damage(exc: BaseException) -> bool:
    """Whether an SQLite error says the file is damaged or not a database at all."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    return "malformed" in str(exc) or "not a database" in str(exc)


def move_aside(path: Path) -> Path:
    """Rename the file and its WAL companions to ``<name>.corrupt-<time>[.n]`` (kept for inspection)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
    for suffix in ("-wal", "-shm", ""):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + suffix))
    return aside
