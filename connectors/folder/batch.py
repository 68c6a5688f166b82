"""Grouping the folder's changes into atomic batches: what one ``emit`` carries, netted against the state
before it (a temp file that came and went is nothing), in slices for snapshots and scans."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ragflow.sources import ChangeKind, DocumentChange

from .read import _FileState

# Snapshot and reconciliation groups are not atomic as a whole; emit them in slices of this size.
_SPILL_BYTES = 32 * 1024 * 1024
_SPILL_FILES = 1000


class _Group:
    """Changes that leave as one ``emit``. Remembers each document's state before the group, so a file
    that appears and vanishes within it (an atomic save's temp file) or returns to its old content nets
    out to nothing. With ``spill`` set (snapshots, scans) it emits in slices instead of growing unbounded."""

    def __init__(
        self,
        known: dict[str, _FileState],
        spill: Callable[[list[DocumentChange]], None] | None = None,
    ) -> None:
        self._known = known
        self._spill = spill
        self._before: dict[str, _FileState | None] = {}
        self._changes: dict[str, DocumentChange] = {}
        self._nbytes = 0
        self.checked: set[str] = set()
        """Documents read since the last batch of events was drained."""

    def record(self, doc_id: str, before: _FileState | None, change: DocumentChange) -> None:
        self._before.setdefault(doc_id, before)
        self._changes[doc_id] = change
        self._nbytes += len(change.data or b"")
        if self._spill is not None and (self._nbytes >= _SPILL_BYTES or len(self._changes) >= _SPILL_FILES):
            self._spill(self.take())

    def upserted_positions(self) -> list[tuple[str, Mapping[str, Any]]]:
        return [(d, c.position) for d, c in self._changes.items() if c.kind is ChangeKind.UPSERT]

    def revert(self, doc_id: str) -> None:
        """Forget this group's change to ``doc_id`` (its read raced a writer), as if it was never read."""
        if doc_id not in self._changes:
            return
        del self._changes[doc_id]
        before = self._before.pop(doc_id)
        if before is None:
            self._known.pop(doc_id, None)
        else:
            self._known[doc_id] = before

    def take(self) -> list[DocumentChange]:
        """The net changes, deletes first, each kind in ``doc_id`` order; empties the group."""
        net = []
        for doc_id, change in self._changes.items():
            before, after = self._before[doc_id], self._known.get(doc_id)
            if before is None and after is None:
                continue
            if before is not None and after is not None and after.same_document(before):
                continue
            net.append(change)
        self._before.clear()
        self._changes.clear()
        self._nbytes = 0
        return sorted(net, key=lambda c: (c.kind is ChangeKind.UPSERT, c.doc_id))
