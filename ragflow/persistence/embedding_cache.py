"""The embedding cache as the store uses it: a write that fails (a full disk) is logged and retried later
instead of stopping indexing."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..engine import UdfCache
from .failures import failure_reason

__all__ = ["TolerantCache"]

log = logging.getLogger("ragflow.persistence")  # the package's one logger (see statefile.py)


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
                    failure_reason(exc, self.where.parent),
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
