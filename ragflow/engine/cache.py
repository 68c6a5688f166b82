"""Content-addressed caches for the batched-UDF operator: an in-memory LRU and an on-disk SQLite store,
so that an input computed once is never computed again, also after a restart."""

from __future__ import annotations

import functools
import hashlib
import pickle
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = ["DiskCache", "MemoryCache", "UdfCache", "content_key"]


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
    """Results pickled into one SQLite table (WAL mode) at ``path``; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key BLOB PRIMARY KEY, value BLOB NOT NULL)")

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, Any]:
        wanted = list(keys)
        found: dict[bytes, Any] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite caps bound parameters per statement
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", part)
                found.update((bytes(key), pickle.loads(value)) for key, value in rows)
        return found

    def put_many(self, items: Mapping[bytes, Any]) -> None:
        rows = []
        for key, value in items.items():
            try:
                rows.append((key, pickle.dumps(value, protocol=5)))
            except Exception:  # a result pickle cannot store is used, just not remembered across runs
                continue
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                # a failed COMMIT (full disk) leaves the transaction open: every later write would fail
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM results").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
