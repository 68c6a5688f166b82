"""The audit log: one JSON line per upload and delete (when, which key, from where, which document, what
came of it), in a file rotated by size, written by its own logger so that it never mixes with the server's
log and never holds a secret."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import time
from typing import Any

__all__ = ["AuditLog"]


class AuditLog:
    """Appends JSON lines to ``path``; at ``max_bytes`` the file is renamed ``path.1`` (``path.1`` to
    ``path.2``...) and a new one started, keeping ``backups`` old files.

    Example:
        >>> log = AuditLog("/var/log/ragflow/audit.jsonl")  # doctest: +SKIP
        >>> log.record("upload", key="ingest", document="upload://faq.md", status=201)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 10_000_000, backups: int = 5) -> None:
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        # A logger of its own per file: records never reach the root logger's handlers.
        self._logger = logging.getLogger(f"ragflow.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)

    def record(self, action: str, **fields: Any) -> None:
        """Write one line: ``{"time", "action", **fields}`` (``time`` in UTC, ISO 8601 with milliseconds)."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self._logger.info(json.dumps({"time": stamp, "action": action, **fields}, ensure_ascii=False))

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()
