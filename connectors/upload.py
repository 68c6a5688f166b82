"""The upload source: documents handed over through an API (``POST /v1/documents``) instead of found in a
system, optionally kept in a directory so that they survive restarts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ragflow.errors import ConfigError
from ragflow.sources import (
    ChangeKind,
    DocumentChange,
    EmitChanges,
    Notifications,
    SourceRun,
    Wake,
    deletion,
    diff_listing,
)

__all__ = ["UploadSource"]

log = logging.getLogger("ragflow.connectors.upload")

# Metadata keys the source sets itself; an upload's own metadata cannot override them.
_SYSTEM_KEYS = frozenset({"path", "size", "seen_at", "seen_at_ns", "doc_id"})


class UploadSource:
    """A ``DocumentSource`` that emits what the API hands it: ``put`` adds or replaces a document, ``delete``
    removes one. Each call is one atomic group of changes.

    A document uploaded as ``name`` gets the id (and ``path``) ``"<source name>://<name>"``, so it cannot
    collide with a document of another source, and glob filters such as ``*.md`` match it as they match a
    file. Documents ``put`` before the store starts are part of its initial snapshot.

    Args:
        name: The source's name in the pipeline; also the scheme of the documents' ids.
        directory: Where to keep uploaded documents so that they survive a restart (written atomically);
            ``None`` keeps them in memory only.

    Positions: each change carries the whole source's state after it (``doc_id -> digest``), so the
    source declares ``position_scope = "stream"`` and a restarted store resumes it from the last
    checkpointed state: only uploads and deletions made after that checkpoint are processed again.

    Example:
        >>> uploads = UploadSource()
        >>> uploads.put("notes.md", b"# Notes").doc_id
        'upload://notes.md'
    """

    position_scope = "stream"

    def __init__(self, name: str = "upload", directory: str | os.PathLike[str] | None = None) -> None:
        if not name or "/" in name or ":" in name:
            raise ConfigError(f"UploadSource name must be non-empty without '/' or ':', got {name!r}")
        self.name = name
        self.directory = Path(directory) if directory is not None else None
        self._lock = threading.Lock()
        self._documents: dict[str, DocumentChange] = {}
        self._digests: dict[str, str] = {}
        self._live: Notifications[DocumentChange] | None = None
        """Where ``put``/``delete`` send their changes while a streaming ``run`` is on."""
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._documents = self._load()
            self._digests = {doc_id: _digest(change) for doc_id, change in self._documents.items()}

    # -- what the API calls ---------------------------------------------------------------------

    def doc_id(self, name: str) -> str:
        """The document id an upload called ``name`` gets (``name`` may already be such an id)."""
        prefix = f"{self.name}://"
        return name if name.startswith(prefix) else prefix + name

    def put(self, name: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> DocumentChange:
        """Add the document ``name`` (or id) or replace its content and metadata; returns the change
        emitted, whose ``metadata["seen_at_ns"]`` tells this version apart from earlier ones.

        Raises:
            ConfigError: ``name`` is empty, absolute or has empty, ``.`` or ``..`` segments.
        """
        prefix = f"{self.name}://"
        name = name[len(prefix) :] if name.startswith(prefix) else name
        _check_name(name)
        doc_id = prefix + name
        seen_ns = time.time_ns()
        system = {
            "path": doc_id,
            "size": len(data),
            "modified_at": seen_ns // 1_000_000_000,
            "created_at": seen_ns // 1_000_000_000,
            "seen_at": seen_ns // 1_000_000_000,
            "seen_at_ns": seen_ns,
        }
        user = {k: v for k, v in (metadata or {}).items() if k not in _SYSTEM_KEYS}
        full = {**system, **user}
        with self._lock:
            previous = self._documents.get(doc_id)
            if previous is not None and "created_at" not in user:
                full["created_at"] = previous.metadata.get("created_at", full["created_at"])
            change = DocumentChange(doc_id, ChangeKind.UPSERT, data, full)
            if self.directory is not None:
                self._save(doc_id, data, full)
            self._documents[doc_id] = change
            self._digests[doc_id] = _digest(change)
            self._send(change)
        return change

    def delete(self, name: str) -> bool:
        """Remove the document ``name`` (or id); ``False`` if there is no such document."""
        doc_id = self.doc_id(name)
        with self._lock:
            if self._documents.pop(doc_id, None) is None:
                return False
            del self._digests[doc_id]
            if self.directory is not None:
                for path in self._files(doc_id):
                    path.unlink(missing_ok=True)
            self._send(deletion(doc_id, doc_id))
        return True

    def ids(self) -> list[str]:
        """The ids of the documents the source holds now, sorted."""
        with self._lock:
            return sorted(self._documents)

    # -- what the engine calls ------------------------------------------------------------------

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None:
        """Emit the documents held now (from ``position``, a mapping ``doc_id -> digest``, only what
        differs from it), then, streaming, each ``put``/``delete`` as it happens until ``stop``."""
        _UploadRun(self, emit, stop).run(mode, position)

    # -- internals ------------------------------------------------------------------------------

    def _send(self, change: DocumentChange) -> None:
        """Queue ``change`` for a running ``run`` (the lock is held); its position is the state after it."""
        if self._live is not None:
            self._live.put(_with_position(change, self._position()))

    def _position(self) -> dict[str, str]:
        return dict(self._digests)

    def _snapshot(self, since: Mapping[str, Any] | None) -> list[DocumentChange]:
        """What differs from ``since`` (``doc_id -> digest``; ``None``: everything), the lock held."""
        seen_ns = time.time_ns()
        changes = [
            self._documents[doc_id] if digest is not None else deletion(doc_id, doc_id, seen_ns)
            for doc_id, digest in diff_listing(since or {}, sorted(self._digests.items()))
        ]
        if changes:
            changes[-1] = _with_position(changes[-1], self._position())
        return changes

    def _files(self, doc_id: str) -> tuple[Path, Path]:
        assert self.directory is not None
        stem = hashlib.blake2b(doc_id.encode(), digest_size=16).hexdigest()
        return self.directory / f"{stem}.data", self.directory / f"{stem}.json"

    def _save(self, doc_id: str, data: bytes, metadata: Mapping[str, Any]) -> None:
        data_path, meta_path = self._files(doc_id)
        _write_atomically(data_path, data)
        # the metadata file is written last: a document whose metadata file exists is complete
        _write_atomically(meta_path, json.dumps({"doc_id": doc_id, "metadata": dict(metadata)}).encode())

    def _load(self) -> dict[str, DocumentChange]:
        assert self.directory is not None
        found: dict[str, DocumentChange] = {}
        for meta_path in sorted(self.directory.glob("*.json")):
            try:
                saved = json.loads(meta_path.read_text(encoding="utf-8"))
                data = meta_path.with_suffix(".data").read_bytes()
                doc_id = str(saved["doc_id"])
                found[doc_id] = DocumentChange(doc_id, ChangeKind.UPSERT, data, dict(saved["metadata"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping unreadable saved upload %s: %s", meta_path, exc)
        return found


class _UploadRun(SourceRun[DocumentChange]):
    """One ``run`` of an ``UploadSource``: its notifications are the uploads themselves, nothing is polled."""

    def __init__(self, source: UploadSource, emit: EmitChanges, stop: threading.Event) -> None:
        super().__init__(emit, stop)
        self._source = source
        self._first: list[DocumentChange] = []

    def start(self, mode: Literal["static", "streaming"], position: Any) -> None:
        source = self._source
        # one lock for both: an upload lands either in the snapshot or in the live queue, never neither
        with source._lock:
            self._first = source._snapshot(position if isinstance(position, Mapping) else None)
            if mode == "streaming":
                source._live = self.notifications

    def snapshot(self) -> list[DocumentChange]:
        return self._first

    def sync(self, wake: Wake[DocumentChange]) -> None:
        self.emit(wake.hints)

    def close(self) -> None:
        with self._source._lock:
            if self._source._live is self.notifications:
                self._source._live = None


def _check_name(name: str) -> None:
    segments = name.split("/")
    if not name or name.startswith("/") or any(s in ("", ".", "..") for s in segments) or "\x00" in name:
        raise ConfigError(
            f"invalid document name {name!r}: use a relative path such as 'reports/q1.pdf' (no empty, "
            "'.' or '..' segments, no leading '/')"
        )


def _digest(change: DocumentChange) -> str:
    metadata = json.dumps(dict(change.metadata), sort_keys=True, default=str).encode()
    return hashlib.blake2b((change.data or b"") + b"\x00" + metadata, digest_size=16).hexdigest()


def _with_position(change: DocumentChange, position: dict[str, str]) -> DocumentChange:
    return dataclasses.replace(change, position=position)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
