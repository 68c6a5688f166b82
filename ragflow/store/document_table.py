"""The documents a ``DocumentStore`` holds: each one's parse result and when it became searchable, with the
counts of the initial indexing. The engine's callbacks write it (engine thread), the reports read it (any
thread) and a restore fills it from a checkpoint (before the engine starts)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ..engine import Change
from ..persistence import SavedDocument
from ..pipeline import ParsedDoc

__all__ = ["DocumentTable"]


class DocumentTable:
    """Parsed documents by id, with ``indexed_at`` (Unix seconds) for each one that is searchable.

    Readers take ``lock`` around reads of ``docs``, ``indexed_at`` and the counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs: dict[str, ParsedDoc] = {}
        self.indexed_at: dict[str, float] = {}
        self.last_indexed: float | None = None
        """When the latest change became searchable (Unix seconds)."""
        self.chunks_seen = 0
        self.chunks_embedded = 0
        self.restored = (0, 0)
        """Documents and chunks loaded from the state directory at start."""
        self.stages: dict[str, dict[str, float]] = {}
        """For each searchable document, when the epoch that made it so started and embedded (Unix
        seconds; ``/v1/inputs`` shows them)."""
        self._touched: set[str] = set()  # parsed in the epoch being processed: searchable at its end
        self._changed: set[str] = set()  # changed in the epoch being processed, for the checkpoint

    # -- written by the engine's callbacks --------------------------------------------------------------

    def on_parsed(self, epoch: int, changes: list[Change]) -> None:
        with self.lock:
            for doc_id, parsed, diff in changes:
                self._changed.add(doc_id)
                if diff > 0:
                    self.docs[doc_id] = parsed
                    self._touched.add(doc_id)
                elif self.docs.get(doc_id) == parsed:
                    del self.docs[doc_id]
                    self.indexed_at.pop(doc_id, None)
                    self.stages.pop(doc_id, None)

    def on_chunks(self, epoch: int, changes: list[Change]) -> None:
        with self.lock:
            self.chunks_seen += sum(diff for _, _, diff in changes if diff > 0)

    def count_embedded(self, chunks: int) -> None:
        with self.lock:
            self.chunks_embedded += chunks

    def end_epoch(
        self, now: float, searchable_changed: bool, stages: dict[str, float] | None = None
    ) -> set[str]:
        """The epoch's changes are searchable as of ``now``: stamp the documents it parsed (with the
        epoch's ``stages``). Returns the ids of the documents it changed (added, replaced or removed)."""
        with self.lock:
            for doc_id in self._touched:
                if doc_id in self.docs:
                    self.indexed_at[doc_id] = now
                    self.stages[doc_id] = stages or {}
            self._touched.clear()
            if searchable_changed:
                self.last_indexed = now
            changed, self._changed = self._changed, set()
        return changed

    def saved(self, doc_ids: Iterable[str]) -> dict[str, SavedDocument | None]:
        """What a checkpoint saves for each of ``doc_ids``: ``None`` for those no longer held."""
        with self.lock:
            return {doc_id: self._saved(doc_id) for doc_id in doc_ids}

    def _saved(self, doc_id: str) -> SavedDocument | None:
        doc = self.docs.get(doc_id)
        return SavedDocument(doc, self.indexed_at.get(doc_id)) if doc is not None else None

    # -- filled by a restore ----------------------------------------------------------------------------

    def load(self, saved: list[SavedDocument], chunks: int) -> None:
        """Hold the documents of a checkpoint (``chunks`` of theirs went into the index)."""
        with self.lock:
            for s in saved:
                self.docs[s.doc.row.doc_id] = s.doc
                if s.indexed_at is not None:
                    self.indexed_at[s.doc.row.doc_id] = s.indexed_at
            self.last_indexed = max(self.indexed_at.values(), default=None)
            self.restored = (len(saved), chunks)

    # -- read by the reports ----------------------------------------------------------------------------

    def items(self) -> list[tuple[str, ParsedDoc]]:
        """``(doc_id, parsed)`` of every document held now."""
        with self.lock:
            return list(self.docs.items())
