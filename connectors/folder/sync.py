"""One run of the folder source: the map of what was emitted, kept in step with the disk through the shared
``SyncLoop`` (inotify events as notifications, reconciliation scans as polls) and ``diff_listing``."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ragflow.errors import SourceError
from ragflow.sources import (
    ChangeKind,
    DocumentChange,
    EmitChanges,
    SourceRun,
    Wake,
    deletion,
    diff_listing,
)

from .batch import _Group
from .read import _FileState, file_metadata, read_file
from .tree import FolderTree, WalkStopped, dir_key
from .watch import Event, FolderWatch, PendingWrites

if TYPE_CHECKING:
    from .source import FolderSource

logger = logging.getLogger("ragflow.connectors.folder")

# Upper bound on how long the return of a missing root may go unnoticed.
_ROOT_RETRY_S = 0.05
# Rounds of "yield, re-drain, re-check what was read" before a group is emitted, so a rename that follows
# a close by microseconds (an atomic save) lands in the same group; bounded so that a constant stream of
# events still gets emitted.
_MAX_SETTLE_ROUNDS = 8


class _FolderSync(SourceRun[Event]):
    """One ``run`` of a ``FolderSource``: the map of what was emitted, the event handling and the scans.

    Events are only hints of *where* to look: every touched path is re-examined on disk and diffed
    against ``known``, so moves, directory moves, atomic saves and lost or reordered events all reduce
    to the same comparison, and the emitted state converges to the tree whatever the event sequence.
    """

    _tree: FolderTree  # set by ``start``: the root is resolved then

    def __init__(self, config: FolderSource, emit: EmitChanges, stop: threading.Event) -> None:
        super().__init__(
            emit,
            stop,
            poll_interval=config.poll_interval or config.reconcile_interval,
            coalesce_window=config.coalesce_window,
        )
        self._config = config
        self._known: dict[str, _FileState] = {}
        self._pending = PendingWrites()
        self._watch = FolderWatch(self.notifications, enabled=config.poll_interval is None)
        self._root_missing = False

    # -- the run's steps (``SourceRun``) -----------------------------------------------------------------

    def start(self, mode: Literal["static", "streaming"], position: Any) -> None:
        try:
            root = self._resolve_root()
        except SourceError as exc:
            self._config.status.unhealthy(str(exc))
            raise
        self._config.status.healthy()
        self._tree = FolderTree(root, self._config)
        self._known = self._known_from_position(position)
        if mode == "streaming":
            self._watch.start(self._tree.root, self.loop)

    def snapshot(self) -> list[DocumentChange] | None:
        group = _Group(self._known, spill=self.emit)
        if not self._sync_tree("", group, None):
            return None
        self.emit(group.take())
        return []

    def sync(self, wake: Wake[Event]) -> None:
        group = _Group(self._known)
        if wake.hints:
            self._apply_events(wake.hints, group)
            self._settle(group)
        for rel, arrived in self._pending.overdue():
            self._sync_path(self._tree.abspath(rel), group, arrived)
        self.emit(group.take())
        scan = _Group(self._known, spill=self.emit)
        if self._root_missing:
            self._retry_root(scan)
        elif wake.poll_due:
            self._reconcile(scan)
        self.emit(scan.take())

    def wake_in(self) -> float | None:
        pending = self._pending.wake_in()
        if self._root_missing:
            return _ROOT_RETRY_S if pending is None else min(pending, _ROOT_RETRY_S)
        return pending

    def close(self) -> None:
        self._watch.stop()

    def _resolve_root(self) -> str:
        root = os.path.realpath(self._config.root)
        try:
            with os.scandir(root):
                pass
        except FileNotFoundError:
            raise SourceError(
                f"folder source root {root} does not exist; create it or fix the path"
            ) from None
        except NotADirectoryError:
            raise SourceError(f"folder source root {root} is not a directory") from None
        except OSError as exc:
            raise SourceError(f"folder source root {root} cannot be listed: {exc.strerror}") from exc
        return root

    @staticmethod
    def _known_from_position(position: Any) -> dict[str, _FileState]:
        if position is None:
            return {}
        if not isinstance(position, Mapping):
            raise SourceError(
                f"FolderSource cannot resume from a position of type {type(position).__name__}; "
                "expected a mapping doc_id -> fingerprint saved from its earlier changes"
            )
        return {str(doc_id): _FileState.from_position(value) for doc_id, value in position.items()}

    # -- events ------------------------------------------------------------------------------------------

    def _settle(self, group: _Group) -> None:
        """Catch up with the disk before emitting: no fixed delay, only what already happened.

        Each round yields the GIL (the writer and watchdog's threads may be waiting for it), takes any
        events that arrived meanwhile, and re-reads every file whose stat changed since it was read in
        this group. So a temp file renamed away, or a file truncated for a rewrite, is not emitted as long
        as the rename or the write happened before the group leaves; a writer stalled longer than that
        (CPU starvation) shows its intermediate state, which its next event corrects."""
        for _ in range(_MAX_SETTLE_ROUNDS):
            time.sleep(0)
            events = self.notifications.drain()
            if events:
                self._apply_events(events, group)
                continue
            stale = [doc_id for doc_id, fp in group.upserted_positions() if not self._unchanged(doc_id, fp)]
            if not stale:
                return
            group.checked.clear()
            for doc_id in stale:
                self._sync_path(self._tree.abspath(doc_id), group, None)

    def _unchanged(self, doc_id: str, position: Mapping[str, Any]) -> bool:
        try:
            st = os.stat(self._tree.abspath(doc_id), follow_symlinks=self._config.follow_symlinks)
        except OSError:
            return False
        fingerprint = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        return fingerprint == (position["ino"], position["size"], position["mtime_ns"], position["ctime_ns"])

    def _apply_events(self, events: list[Event], group: _Group) -> None:
        """Re-examine every path the events name, except files still being written (``PendingWrites``)."""
        group.checked.clear()
        paths = self._pending.touched(events, self._tree.rel)
        for path, (arrived, writing) in paths.items():
            if not writing:
                rel = self._tree.rel(path)
                if rel is not None:
                    arrived = self._pending.settle(rel, arrived)
                self._sync_path(path, group, arrived)
        for path, (arrived, writing) in paths.items():
            rel = self._tree.rel(path)
            if (
                not writing
                or rel is None
                or rel in group.checked
                or not self._tree.visible(rel, is_dir=False)
            ):
                continue
            # Read in an earlier round of this group, but written again since: that read may be a
            # half-written file (truncated, partly written), so wait for this write's close instead.
            group.revert(rel)
            self._pending.wait_for_close(rel, arrived)

    # -- the root ----------------------------------------------------------------------------------------

    def _reconcile(self, group: _Group) -> None:
        """Rescan the whole tree into ``group``: catches whatever inotify missed (queue overflow...)."""
        root_key = dir_key(self._tree.root)
        if root_key is None:
            self._lose_root(group)
            return
        if self._watch.enabled and root_key != self._watch.root_key:
            # The root was replaced by another directory, or came back: the old watches see nothing.
            self._watch.stop()
            self._watch.start(self._tree.root, self.loop)
        self._sync_tree("", group, None)

    def _lose_root(self, group: _Group) -> None:
        """The root is gone: everything in it is deleted; keep running and watch for it to come back."""
        logger.warning(
            "folder source root %s disappeared; deleting its documents until it reappears", self._tree.root
        )
        self._watch.stop()
        self._root_missing = True
        self._config.status.unhealthy(
            f"folder {self._tree.root} is missing (deleted, moved or unmounted); its documents are out of "
            "the index until it is back: restore it, or fix the source's root"
        )
        self._pending.first.clear()
        for doc_id in sorted(self._known):
            self._delete(doc_id, group, None)

    def _retry_root(self, group: _Group) -> None:
        if not os.path.isdir(self._tree.root):
            return
        logger.info("folder source root %s is back; rescanning it", self._tree.root)
        self._root_missing = False
        self._config.status.healthy()
        self._reconcile(group)

    def _sync_root(self, group: _Group) -> None:
        # The root's own watch fired: it was deleted, and maybe already re-created as a new directory that
        # the old watches cannot see. Either way the old observer is dead (watchdog stops it).
        self._watch.stop()
        self._reconcile(group)

    # -- comparing the disk with what was emitted ---------------------------------------------------------

    def _sync_path(self, path: str, group: _Group, seen_ns: int | None) -> None:
        """Bring everything at ``path`` (a file, a directory tree or nothing any more) up to date."""
        rel = self._tree.rel(path)
        if rel is None:
            return
        if rel == "":
            self._sync_root(group)
            return
        try:
            st = os.stat(path, follow_symlinks=self._config.follow_symlinks)
        except OSError:
            st = None  # gone, or a dangling / looping symlink: either way no document lives here
        try:
            if st is not None and stat.S_ISDIR(st.st_mode) and self._tree.visible(rel, is_dir=True):
                self._sync_tree(rel, group, seen_ns)
            elif st is not None and stat.S_ISREG(st.st_mode) and self._tree.visible(rel, is_dir=False):
                self._sync_file(rel, group, seen_ns)
            else:
                self._forget_tree(rel, group, seen_ns)
        except Exception:
            logger.exception("folder source failed to update %s; the next reconciliation retries it", path)

    def _sync_tree(self, rel_dir: str, group: _Group, seen_ns: int | None) -> bool:
        """Diff the files under ``rel_dir`` against ``known``; ``False`` if ``stop`` cut the walk short."""
        unreadable: list[str] = []
        listing = self._tree.walk(rel_dir, unreadable, self._stop)
        under = f"{rel_dir}/" if rel_dir else ""
        try:
            for doc_id, st in diff_listing(self._known, listing, self._unchanged_since_read, under):
                if st is None:
                    # A directory we could not list keeps its documents: "unreadable" is not "deleted".
                    if not doc_id.startswith(tuple(unreadable)):
                        self._delete(doc_id, group, seen_ns)
                elif doc_id not in self._pending.first:
                    self._sync_file(doc_id, group, seen_ns)
        except WalkStopped:
            return False
        return True

    def _unchanged_since_read(self, before: _FileState, st: os.stat_result) -> bool:
        # a lower size cap (after a restart with other settings) may now exclude an unchanged file
        return st.st_size <= self._config.max_file_size and before.matches_stat(st)

    def _sync_file(self, doc_id: str, group: _Group, seen_ns: int | None) -> None:
        before = self._known.get(doc_id)
        group.checked.add(doc_id)
        abspath = self._tree.abspath(doc_id)
        read_ns = time.time_ns()
        try:
            result = read_file(abspath, self._config.follow_symlinks, self._config.max_file_size)
        except Exception:
            logger.exception("unexpected error reading %s; skipping it until it changes again", abspath)
            return
        if result is None:
            self._delete(doc_id, group, seen_ns)
            return
        state = result.state(read_ns)
        self._known[doc_id] = state
        if before is not None and state.same_document(before):
            return
        seen = seen_ns if seen_ns is not None else read_ns
        change = DocumentChange(
            doc_id=doc_id,
            kind=ChangeKind.UPSERT,
            data=result.data,
            metadata=file_metadata(abspath, result.stat, seen),
            position=state.to_position(),
            error=result.error,
        )
        group.record(doc_id, before, change)

    def _forget_tree(self, rel: str, group: _Group, seen_ns: int | None) -> None:
        prefix = f"{rel}/"
        for doc_id in sorted(d for d in self._known if d == rel or d.startswith(prefix)):
            self._delete(doc_id, group, seen_ns)

    def _delete(self, doc_id: str, group: _Group, seen_ns: int | None) -> None:
        before = self._known.pop(doc_id, None)
        if before is None:
            return
        group.record(doc_id, before, deletion(doc_id, self._tree.abspath(doc_id), seen_ns))
