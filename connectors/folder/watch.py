"""Watching the folder: the inotify observer whose events become hints for the source's loop, the polling
fallback when it cannot start, and what an event says about a file (settled, or still being written)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from ragflow.sources import Notifications, SyncLoop

from .tree import dir_key

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

logger = logging.getLogger("ragflow.connectors.folder")

Event = tuple[int, FileSystemEvent]
"""A watchdog event stamped with its arrival time (``time.time_ns()``)."""

# A file that was created or modified but never closed (a hard link, a writer that keeps it open) is
# read this long after its first unsettled event; closed files are read at once.
_UNCLOSED_WRITE_GRACE_S = 1.0
# Periodic scan interval used when inotify cannot be started (watch limit, non-Linux platform).
_FALLBACK_SCAN_S = 2.0

_WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
"""Restricting the inotify mask to these keeps our own reads (open / close-nowrite) from echoing back."""


class _EventQueueing(FileSystemEventHandler):
    """Hands every watchdog event, stamped with its arrival time, to the source's thread."""

    def __init__(self, sink: Notifications[Event]) -> None:
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        self._sink.put((time.time_ns(), event))


class FolderWatch:
    """The inotify observer over the root, feeding ``sink``; once it cannot start (watch limit, no
    inotify on this platform), the source polls instead: ``enabled`` turns false and the loop's poll
    interval drops to at most ``_FALLBACK_SCAN_S``."""

    def __init__(self, sink: Notifications[Event], enabled: bool) -> None:
        self.enabled = enabled
        self.root_key: tuple[int, int] | None = None
        """The watched root directory's ``(st_dev, st_ino)``: another one there is not watched."""
        self._sink = sink
        self._observer: BaseObserver | None = None

    def start(self, root: str, loop: SyncLoop[Event]) -> None:
        if not self.enabled:
            return
        try:
            from watchdog.observers.inotify import InotifyObserver

            # Full events tell a move into the tree (complete file) from a fresh create (maybe half written).
            observer = InotifyObserver(generate_full_events=True)
            observer.schedule(_EventQueueing(self._sink), root, recursive=True, event_filter=_WATCHED_EVENTS)
            observer.start()
        except (ImportError, OSError) as exc:
            self.enabled = False
            loop.poll_interval = min(loop.poll_interval or _FALLBACK_SCAN_S, _FALLBACK_SCAN_S)
            logger.warning(
                "cannot watch %s with inotify (%s); rescanning every %s s instead",
                root,
                exc,
                loop.poll_interval,
            )
            return
        self._observer = observer
        self.root_key = dir_key(root)

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        self.root_key = None
        if observer is not None:
            observer.stop()
            observer.join()


class PendingWrites:
    """Files a writer created or modified and has not closed yet: each is read when its writer closes it,
    or ``_UNCLOSED_WRITE_GRACE_S`` after its first event when it is never closed (a new hard link)."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}
        """doc_id -> arrival ns of its first created/modified event not yet followed by a close."""

    def touched(
        self, events: Iterable[Event], rel: Callable[[str], str | None]
    ) -> dict[str, tuple[int, bool]]:
        """Every path the events name -> (first arrival, still being written).

        A path's last event decides: a close, move, delete or attribute change means it is settled and is
        read now; a create or modify means a writer is (again) at work, so it waits for the close."""
        paths: dict[str, tuple[int, bool]] = {}
        for arrived, event in events:
            if event.is_synthetic:
                continue  # contents of a created or moved directory: the directory's own rescan covers them
            src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
            writing = self._is_unsettled_write(event, rel(src))
            for path in (src, dest):
                if path:
                    paths[path] = (paths.get(path, (arrived, False))[0], writing)
        return paths

    def settle(self, rel: str, arrived: int) -> int:
        """``rel`` is settled: forget its pending write; the earliest arrival of its events."""
        return min(arrived, self.first.pop(rel, arrived))

    def wait_for_close(self, rel: str, arrived: int) -> None:
        self.first.setdefault(rel, arrived)

    def overdue(self) -> list[tuple[str, int]]:
        """Take the writes never closed within the grace period: ``(doc_id, first arrival)`` to read now."""
        now = time.time_ns()
        due = [rel for rel, first in self.first.items() if now - first >= _UNCLOSED_WRITE_GRACE_S * 1e9]
        return [(rel, self.first.pop(rel)) for rel in due]

    def wake_in(self) -> float | None:
        """Seconds until the oldest pending write is overdue; ``None`` when none is pending."""
        if not self.first:
            return None
        return _UNCLOSED_WRITE_GRACE_S - (time.time_ns() - min(self.first.values())) / 1e9

    def _is_unsettled_write(self, event: FileSystemEvent, rel: str | None) -> bool:
        # Created/modified without a close means a writer may still be at work; an attribute change on a
        # file being written (mkstemp's chmod) does not end that, on any other file it is worth a look.
        if isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            return True
        if isinstance(event, FileAttribEvent):
            return rel is not None and rel in self.first
        return False
