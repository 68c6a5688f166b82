"""The ``describe_state`` report: what a state directory holds, read without changing it, for
``ragflow status --state-dir``."""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import time
from pathlib import Path
from typing import Any

from .records import CACHE_FILE, STATE_FILE, DamagedState

__all__ = ["describe_state"]


def describe_state(
    state_dir: str | os.PathLike[str],
    *,
    check_integrity: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """What a state directory holds, read without changing it (safe while a store runs on it); for
    ``ragflow status --state-dir``.

    Returns a JSON-serialisable dict: ``state_dir``, ``exists``, ``format_version``, ``model_id``,
    ``dim``, ``parser_id``, ``documents``, ``chunks``, ``sources`` (name -> ``scope``, ``documents``,
    ``chunks``, ``positions``: documents carrying a per-document position, ``position``: the saved
    position of a ``"stream"`` source, as text), ``last_checkpoint`` (``epoch``, ``time`` in Unix
    seconds, ``age_seconds``) or ``None``, ``checkpoints`` kept, ``state_bytes``, ``cache`` (``entries``,
    ``bytes``), and ``problem``: ``None``, or why the state cannot be read (a start would rebuild it).
    With ``check_integrity``, also runs SQLite's ``quick_check`` (reads the whole file). ``cache_dir``
    holds the embedding cache when it is not ``state_dir`` (a generation's cache is at the root).

    Example:
        >>> describe_state("/nonexistent")["exists"]
        False
    """
    directory = Path(state_dir)
    path = directory / STATE_FILE
    cache_path = Path(cache_dir if cache_dir is not None else directory) / CACHE_FILE
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
    except (sqlite3.Error, DamagedState) as exc:
        result["problem"] = str(exc)
    return result


def _describe_into(result: dict[str, Any], db: sqlite3.Connection, check_integrity: bool) -> None:
    if check_integrity:
        problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise DamagedState(f"integrity check: {'; '.join(problems)}")
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
