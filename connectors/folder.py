"""The folder source: a directory tree as document changes keyed by root-relative POSIX path, first as a
snapshot, then live from inotify events (or periodic scans), with periodic reconciliation."""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import pwd
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

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

from ragflow.documents import ChangeKind, DocumentChange, EmitChanges
from ragflow.errors import ConfigError, FilterError, SourceError
from ragflow.filters import glob_to_regex, globmatch

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

__all__ = ["FolderSource"]

logger = logging.getLogger("ragflow.connectors.folder")

ALWAYS_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ragflow"})
"""Directory names never descended into, whatever ``skip_hidden`` says."""

# A file whose ctime is this close to the moment we read it may change again within the same
# filesystem timestamp tick (coarse clocks, 2 s on FAT), so scans never trust its fingerprint alone.
_RACY_WINDOW_NS = 2_000_000_000
# A file that was created or modified but never closed (a hard link, a writer that keeps it open) is
# read this long after its first unsettled event; closed files are read at once.
_UNCLOSED_WRITE_GRACE_S = 1.0
# Upper bound on how long ``stop`` may go unnoticed while idle.
_STOP_CHECK_S = 0.05
# Rounds of "yield, re-drain, re-check what was read" before a group is emitted, so a rename that follows
# a close by microseconds (an atomic save) lands in the same group; bounded so that a constant stream of
# events still gets emitted.
_MAX_SETTLE_ROUNDS = 8
# Snapshot and reconciliation groups are not atomic as a whole; emit them in slices of this size.
_SPILL_BYTES = 32 * 1024 * 1024
_SPILL_FILES = 1000
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


class FolderSource:
    """Documents from the files under ``root``, one per regular file, ``doc_id`` = root-relative POSIX path.

    Args:
        root: The folder to index. Resolved to its real path when ``run`` starts; must exist then.
        include: Glob patterns (``ragflow.filters.globmatch`` semantics) a file's root-relative path must
            match; a leading ``/`` anchors a pattern at the root (``/notes/*.md``), otherwise ``*.md``
            matches at any depth.
        exclude: Glob patterns that drop a file; one that matches a directory drops everything below it.
        name: The source's name in the pipeline; defaults to ``folder:<root>``.
        skip_hidden: Skip files and directories whose name starts with ``.``. ``.git``, ``.hg``, ``.svn``,
            ``__pycache__`` and ``.ragflow`` are always skipped.
        follow_symlinks: Follow symlinks to files and directories (with loop detection). Changes seen
            only through a symlinked directory are picked up by reconciliation, not by live events.
        max_file_size: Files larger than this many bytes are reported with an ``error`` instead of data.
        poll_interval: When set, no inotify: the tree is rescanned every ``poll_interval`` seconds.
        reconcile_interval: Seconds between full rescans that catch events inotify lost; ``None`` disables.
        coalesce_window: Extra seconds to gather events after the first one of a batch. ``0`` (default)
            only takes what is already queued, so a lone change is emitted within milliseconds.

    Behaviour worth knowing:

    - A change whose content is byte-identical (``touch``, ``chmod``, rewriting the same bytes) emits
      nothing, so ``modified_at`` is the modification time of the last *content* change seen.
    - A new or rewritten file is read when its writer closes it (a file never closed, such as a new
      hard link, is read one second after its first event); a rename (atomic save) is read at once.
    - Moves, directory moves and atomic saves are one ``emit`` each: DELETEs of the old ids, UPSERTs of
      the new ones. A move out of the tree arrives about 0.5 s late: watchdog waits that long for the
      other half of a rename before calling it a delete.
    - ``position`` per change is the file's fingerprint (size, mtime_ns, ctime_ns, inode, content
      digest); ``run`` resumes from a mapping ``doc_id -> position`` and emits only the differences.
    - If the root disappears, every document is deleted and the source keeps running; when the root
      comes back, it is rescanned and watched again.

    Example:
        >>> import threading
        >>> source = FolderSource("docs", include=("**/*.md",))
        >>> source.run(print, threading.Event(), "static")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        include: Sequence[str] = ("**/*",),
        exclude: Sequence[str] = (),
        name: str | None = None,
        skip_hidden: bool = True,
        follow_symlinks: bool = False,
        max_file_size: int = 50 * 1024 * 1024,
        poll_interval: float | None = None,
        reconcile_interval: float | None = 60.0,
        coalesce_window: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.include = _patterns("include", include)
        self.exclude = _patterns("exclude", exclude)
        if not self.include:
            raise ConfigError("FolderSource include must list at least one glob pattern, e.g. '**/*'")
        self.name = name if name is not None else f"folder:{root}"
        self.skip_hidden = skip_hidden
        self.follow_symlinks = follow_symlinks
        if max_file_size <= 0:
            raise ConfigError(
                f"FolderSource max_file_size must be a positive byte count, got {max_file_size}"
            )
        self.max_file_size = max_file_size
        self.poll_interval = _interval("poll_interval", poll_interval)
        self.reconcile_interval = _interval("reconcile_interval", reconcile_interval)
        if coalesce_window < 0:
            raise ConfigError(f"FolderSource coalesce_window must be >= 0 seconds, got {coalesce_window}")
        self.coalesce_window = coalesce_window

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None:
        """Emit the snapshot (or, from ``position``, what changed since), then live changes until ``stop``."""
        if mode not in ("static", "streaming"):
            raise ConfigError(f"FolderSource mode must be 'static' or 'streaming', got {mode!r}")
        _FolderSync(self, emit, stop).run(mode, position)


def _patterns(option: str, value: Sequence[str]) -> tuple[str, ...]:
    # A bare string is a sequence of one-letter patterns: the classic mistake, so take it as one pattern.
    patterns = (value,) if isinstance(value, str) else tuple(value)
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"FolderSource {option} patterns must be non-empty strings, got {pattern!r}")
        try:
            glob_to_regex(pattern)
        except FilterError as exc:
            raise ConfigError(f"FolderSource {option}: {exc}") from exc
    return patterns


def _interval(option: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ConfigError(f"FolderSource {option} must be a positive number of seconds or None, got {value}")
    return value


@functools.lru_cache(maxsize=256)
def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@dataclass(frozen=True, slots=True)
class _FileState:
    """What the source last saw of a file: stat fingerprint and content digest (``None`` if unreadable)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    digest: str | None
    error: str | None = None
    racy: bool = False

    def matches_stat(self, st: os.stat_result) -> bool:
        """Whether a scan may take the file as unchanged without reading it."""
        return (
            self.digest is not None
            and not self.racy
            and (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            == (self.size, self.mtime_ns, self.ctime_ns, self.ino)
        )

    def same_document(self, other: _FileState) -> bool:
        """Equal content (or the same error): a re-emit would change nothing downstream."""
        if self.digest is not None or other.digest is not None:
            return self.digest == other.digest
        return self.error == other.error

    def to_position(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "ctime_ns": self.ctime_ns,
            "ino": self.ino,
            "digest": self.digest,
            "racy": self.racy,
        }

    @classmethod
    def from_position(cls, value: Any) -> _FileState:
        """Parse a saved fingerprint; anything unrecognised becomes a state that forces a re-read."""
        try:
            return cls(
                size=int(value["size"]),
                mtime_ns=int(value["mtime_ns"]),
                ctime_ns=int(value.get("ctime_ns", -1)),
                ino=int(value.get("ino", -1)),
                digest=value.get("digest"),
                racy=bool(value.get("racy", False)),
            )
        except (TypeError, KeyError, ValueError, AttributeError):
            return cls(size=-1, mtime_ns=-1, ctime_ns=-1, ino=-1, digest=None, error="unparsed position")


@dataclass(frozen=True, slots=True)
class _FileRead:
    """The outcome of reading one regular file: data, or an error saying why there is none."""

    stat: os.stat_result
    data: bytes | None
    error: str | None

    def state(self, read_ns: int) -> _FileState:
        st = self.stat
        digest = None if self.data is None else hashlib.blake2b(self.data, digest_size=16).hexdigest()
        racy = read_ns - max(st.st_mtime_ns, st.st_ctime_ns) < _RACY_WINDOW_NS
        return _FileState(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest, self.error, racy)


@dataclass(frozen=True, slots=True)
class _WalkItem:
    """A directory to list (``stat`` is ``None``) or a file to yield, with the directories above it."""

    rel: str
    stat: os.stat_result | None
    ancestors: frozenset[tuple[int, int]]


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


class _EventQueueing(FileSystemEventHandler):
    """Hands every watchdog event, stamped with its arrival time, to the source's thread."""

    def __init__(self, sink: queue.SimpleQueue[tuple[int, FileSystemEvent]]) -> None:
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        self._sink.put((time.time_ns(), event))


class _FolderSync:
    """One ``run`` of a ``FolderSource``: the map of what was emitted, the event loop and the scans.

    Events are only hints of *where* to look: every touched path is re-examined on disk and diffed
    against ``known``, so moves, directory moves, atomic saves and lost or reordered events all reduce
    to the same comparison, and the emitted state converges to the tree whatever the event sequence.
    """

    def __init__(self, config: FolderSource, emit: EmitChanges, stop: threading.Event) -> None:
        self._config = config
        self._emit = emit
        self._stop = stop
        self._root = ""
        self._root_prefix = ""
        self._known: dict[str, _FileState] = {}
        self._pending: dict[str, int] = {}
        """doc_id -> arrival ns of its first created/modified event not yet followed by a close."""
        self._events: queue.SimpleQueue[tuple[int, FileSystemEvent]] = queue.SimpleQueue()
        self._observer: BaseObserver | None = None
        self._root_key: tuple[int, int] | None = None
        self._root_missing = False
        self._use_inotify = config.poll_interval is None
        self._scan_interval = config.poll_interval or config.reconcile_interval

    # -- lifecycle ---------------------------------------------------------------------------------------

    def run(self, mode: Literal["static", "streaming"], position: Any) -> None:
        self._root = self._resolve_root()
        self._root_prefix = self._root if self._root.endswith(os.sep) else self._root + os.sep
        self._known = self._known_from_position(position)
        try:
            if mode == "streaming":
                # Watch before the snapshot, so a change made while it runs is queued, not lost.
                self._start_observer()
            if not self._snapshot():
                return
            self._emit([], snapshot_done=True)
            if mode == "streaming":
                self._stream()
        finally:
            self._stop_observer()

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

    def _start_observer(self) -> None:
        if not self._use_inotify:
            return
        try:
            from watchdog.observers.inotify import InotifyObserver

            # Full events tell a move into the tree (complete file) from a fresh create (maybe half written).
            observer = InotifyObserver(generate_full_events=True)
            observer.schedule(
                _EventQueueing(self._events), self._root, recursive=True, event_filter=_WATCHED_EVENTS
            )
            observer.start()
        except (ImportError, OSError) as exc:
            self._use_inotify = False
            self._scan_interval = min(self._scan_interval or _FALLBACK_SCAN_S, _FALLBACK_SCAN_S)
            logger.warning(
                "cannot watch %s with inotify (%s); rescanning every %s s instead",
                self._root,
                exc,
                self._scan_interval,
            )
            return
        self._observer = observer
        self._root_key = self._stat_key(self._root)

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join()

    # -- snapshot and event loop -------------------------------------------------------------------------

    def _snapshot(self) -> bool:
        """Emit the initial state; ``False`` when ``stop`` interrupted it."""
        group = _Group(self._known, spill=self._emit_changes)
        if not self._sync_tree("", group, None):
            return False
        self._emit_changes(group.take())
        return True

    def _stream(self) -> None:
        next_scan = self._next_scan_time()
        while not self._stop.is_set():
            first = self._next_event(next_scan)
            group = _Group(self._known)
            if first is not None:
                self._apply_events(self._gather(first), group)
                self._settle(group)
            self._flush_unclosed(group)
            self._emit_changes(group.take())
            scan = _Group(self._known, spill=self._emit_changes)
            if self._root_missing:
                self._retry_root(scan)
            elif time.monotonic() >= next_scan:
                self._reconcile(scan)
                next_scan = self._next_scan_time()
            self._emit_changes(scan.take())

    def _settle(self, group: _Group) -> None:
        """Catch up with the disk before emitting: no fixed delay, only what already happened.

        Each round yields the GIL (the writer and watchdog's threads may be waiting for it), takes any
        events that arrived meanwhile, and re-reads every file whose stat changed since it was read in
        this group. So a temp file renamed away, or a file truncated for a rewrite, is not emitted as long
        as the rename or the write happened before the group leaves; a writer stalled longer than that
        (CPU starvation) shows its intermediate state, which its next event corrects."""
        for _ in range(_MAX_SETTLE_ROUNDS):
            time.sleep(0)
            events = self._drain()
            if events:
                self._apply_events(events, group)
                continue
            stale = [doc_id for doc_id, fp in group.upserted_positions() if not self._unchanged(doc_id, fp)]
            if not stale:
                return
            group.checked.clear()
            for doc_id in stale:
                self._sync_path(self._abspath(doc_id), group, None)

    def _unchanged(self, doc_id: str, position: Mapping[str, Any]) -> bool:
        try:
            st = os.stat(self._abspath(doc_id), follow_symlinks=self._config.follow_symlinks)
        except OSError:
            return False
        fingerprint = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        return fingerprint == (position["ino"], position["size"], position["mtime_ns"], position["ctime_ns"])

    def _next_scan_time(self) -> float:
        return time.monotonic() + self._scan_interval if self._scan_interval is not None else float("inf")

    def _next_event(self, next_scan: float) -> tuple[int, FileSystemEvent] | None:
        now = time.monotonic()
        timeout = min(_STOP_CHECK_S, next_scan - now)
        if self._pending:
            oldest = min(self._pending.values())
            timeout = min(timeout, _UNCLOSED_WRITE_GRACE_S - (time.time_ns() - oldest) / 1e9)
        try:
            return self._events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def _gather(self, first: tuple[int, FileSystemEvent]) -> list[tuple[int, FileSystemEvent]]:
        events = [first, *self._drain()]
        deadline = time.monotonic() + self._config.coalesce_window
        while (left := deadline - time.monotonic()) > 0:
            try:
                events.append(self._events.get(timeout=left))
            except queue.Empty:
                break
        return events

    def _drain(self) -> list[tuple[int, FileSystemEvent]]:
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def _apply_events(self, events: list[tuple[int, FileSystemEvent]], group: _Group) -> None:
        """Re-examine every path the events name, except files still being written (see ``_pending``).

        A path's last event decides: a close, move, delete or attribute change means it is settled and is
        read now; a create or modify means a writer is (again) at work, so it waits for the close."""
        group.checked.clear()
        paths: dict[str, tuple[int, bool]] = {}  # path -> (first arrival, still being written)
        for arrived, event in events:
            if event.is_synthetic:
                continue  # contents of a created or moved directory: the directory's own rescan covers them
            src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
            writing = self._is_unsettled_write(event, src)
            for path in (src, dest):
                if path:
                    paths[path] = (paths.get(path, (arrived, False))[0], writing)
        for path, (arrived, writing) in paths.items():
            if not writing:
                rel = self._rel(path)
                if rel is not None:
                    arrived = min(arrived, self._pending.pop(rel, arrived))
                self._sync_path(path, group, arrived)
        for path, (arrived, writing) in paths.items():
            rel = self._rel(path)
            if not writing or rel is None or rel in group.checked or not self._visible(rel, is_dir=False):
                continue
            # Read in an earlier round of this group, but written again since: that read may be a
            # half-written file (truncated, partly written), so wait for this write's close instead.
            group.revert(rel)
            self._pending.setdefault(rel, arrived)

    def _is_unsettled_write(self, event: FileSystemEvent, src: str) -> bool:
        # Created/modified without a close means a writer may still be at work; an attribute change on a
        # file being written (mkstemp's chmod) does not end that, on any other file it is worth a look.
        if isinstance(event, (FileCreatedEvent, FileModifiedEvent)):
            return True
        if isinstance(event, FileAttribEvent):
            rel = self._rel(src)
            return rel is not None and rel in self._pending
        return False

    def _flush_unclosed(self, group: _Group) -> None:
        now = time.time_ns()
        due = [rel for rel, first in self._pending.items() if now - first >= _UNCLOSED_WRITE_GRACE_S * 1e9]
        for rel in due:
            arrived = self._pending.pop(rel)
            self._sync_path(self._abspath(rel), group, arrived)

    def _reconcile(self, group: _Group) -> None:
        """Rescan the whole tree into ``group``: catches whatever inotify missed (queue overflow...)."""
        root_key = self._stat_key(self._root)
        if root_key is None:
            self._lose_root(group)
            return
        if self._use_inotify and root_key != self._root_key:
            # The root was replaced by another directory, or came back: the old watches see nothing.
            self._stop_observer()
            self._start_observer()
        self._sync_tree("", group, None)

    def _lose_root(self, group: _Group) -> None:
        """The root is gone: everything in it is deleted; keep running and watch for it to come back."""
        logger.warning(
            "folder source root %s disappeared; deleting its documents until it reappears", self._root
        )
        self._stop_observer()
        self._root_key = None
        self._root_missing = True
        self._pending.clear()
        for doc_id in sorted(self._known):
            self._delete(doc_id, group, None)

    def _retry_root(self, group: _Group) -> None:
        if not os.path.isdir(self._root):
            return
        logger.info("folder source root %s is back; rescanning it", self._root)
        self._root_missing = False
        self._reconcile(group)

    def _emit_changes(self, changes: list[DocumentChange]) -> None:
        if changes:
            self._emit(changes)

    # -- comparing the disk with what was emitted ---------------------------------------------------------

    def _sync_path(self, path: str, group: _Group, seen_ns: int | None) -> None:
        """Bring everything at ``path`` (a file, a directory tree or nothing any more) up to date."""
        rel = self._rel(path)
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
            if st is not None and stat.S_ISDIR(st.st_mode) and self._visible(rel, is_dir=True):
                self._sync_tree(rel, group, seen_ns)
            elif st is not None and stat.S_ISREG(st.st_mode) and self._visible(rel, is_dir=False):
                self._sync_file(rel, group, seen_ns)
            else:
                self._forget_tree(rel, group, seen_ns)
        except Exception:
            logger.exception("folder source failed to update %s; the next reconciliation retries it", path)

    def _sync_root(self, group: _Group) -> None:
        # The root's own watch fired: it was deleted, and maybe already re-created as a new directory that
        # the old watches cannot see. Either way the old observer is dead (watchdog stops it).
        self._stop_observer()
        self._root_key = None
        self._reconcile(group)

    def _sync_tree(self, rel_dir: str, group: _Group, seen_ns: int | None) -> bool:
        """Diff the files under ``rel_dir`` against ``known``; ``False`` if ``stop`` cut the walk short."""
        present: set[str] = set()
        unreadable: list[str] = []
        for doc_id, st in self._walk(rel_dir, unreadable):
            if self._stop.is_set():
                return False
            present.add(doc_id)
            if doc_id not in self._pending:
                self._sync_file(doc_id, group, seen_ns, scanned=st)
        prefix = f"{rel_dir}/" if rel_dir else ""
        # A directory we could not list keeps its documents: "unreadable" is not "deleted".
        kept = tuple(unreadable)
        gone = [
            d for d in self._known if d.startswith(prefix) and d not in present and not d.startswith(kept)
        ]
        for doc_id in sorted(gone):
            self._delete(doc_id, group, seen_ns)
        return True

    def _sync_file(
        self, doc_id: str, group: _Group, seen_ns: int | None, scanned: os.stat_result | None = None
    ) -> None:
        before = self._known.get(doc_id)
        # a file unchanged since it was read is skipped, unless a lower size cap (after a restart with
        # other settings) now excludes it
        within_cap = scanned is not None and scanned.st_size <= self._config.max_file_size
        if scanned is not None and before is not None and within_cap and before.matches_stat(scanned):
            return
        group.checked.add(doc_id)
        abspath = self._abspath(doc_id)
        read_ns = time.time_ns()
        try:
            result = self._read_file(abspath)
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
            metadata=self._metadata(abspath, result.stat, seen),
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
        seen = seen_ns if seen_ns is not None else time.time_ns()
        metadata = {"path": self._abspath(doc_id), "seen_at": seen // 1_000_000_000, "seen_at_ns": seen}
        group.record(doc_id, before, DocumentChange(doc_id, ChangeKind.DELETE, metadata=metadata))

    @staticmethod
    def _metadata(abspath: str, st: os.stat_result, seen_ns: int) -> dict[str, Any]:
        return {
            "path": abspath,
            "size": st.st_size,
            "modified_at": st.st_mtime_ns // 1_000_000_000,
            "created_at": int(getattr(st, "st_birthtime", st.st_ctime)),
            "seen_at": seen_ns // 1_000_000_000,
            "seen_at_ns": seen_ns,
            "owner": _owner_name(st.st_uid),
        }

    # -- reading files -----------------------------------------------------------------------------------

    def _read_file(self, abspath: str) -> _FileRead | None:
        """Read a regular file whole; ``None`` when no regular file is there (any more)."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO swapped in must not hang us
        if not self._config.follow_symlinks:
            flags |= os.O_NOFOLLOW
        try:
            fd = os.open(abspath, flags)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # it became a symlink we do not follow, or a symlink loop
            return self._unreadable(abspath, exc)
        with open(fd, "rb", closefd=True) as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            cap = self._config.max_file_size
            if st.st_size > cap:
                return _FileRead(st, None, self._too_large(abspath, st.st_size))
            try:
                data = _read_capped(f, st.st_size, cap)
            except OSError as exc:
                return _FileRead(st, None, f"cannot read {abspath}: {exc.strerror} (errno {exc.errno})")
            if data is None:
                return _FileRead(st, None, self._too_large(abspath, None))
            return _FileRead(st, data, None)

    def _unreadable(self, abspath: str, exc: OSError) -> _FileRead | None:
        try:
            st = os.stat(abspath, follow_symlinks=self._config.follow_symlinks)
        except OSError:
            return None
        name = errno.errorcode.get(exc.errno or 0, "?")
        error = f"cannot read {abspath}: {exc.strerror} ({name}); fix its permissions or exclude it"
        return _FileRead(st, None, error)

    def _too_large(self, abspath: str, size: int | None) -> str:
        """``size`` is ``None`` when the file grew past the cap while it was being read."""
        cap = self._config.max_file_size
        what = f"is {size} bytes, over" if size is not None else "grew while being read past"
        return f"{abspath} {what} the cap of {cap} bytes; raise FolderSource(max_file_size=...) to index it"

    # -- walking and filtering -----------------------------------------------------------------------------

    def _walk(self, rel_dir: str, unreadable: list[str]) -> Iterator[tuple[str, os.stat_result]]:
        """Yield ``(doc_id, stat)`` for every visible regular file under ``rel_dir``, in ``doc_id`` order.

        Directories that cannot be listed are appended to ``unreadable`` as doc_id prefixes."""
        stack = [_WalkItem(rel_dir, None, self._ancestor_keys(rel_dir))]
        while stack:
            item = stack.pop()
            if item.stat is not None:
                yield item.rel, item.stat
            else:
                stack.extend(reversed(self._list_dir(item, unreadable)))

    def _list_dir(self, item: _WalkItem, unreadable: list[str]) -> list[_WalkItem]:
        try:
            with os.scandir(self._abspath(item.rel)) as entries:
                listed = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []  # vanished while we walked: its documents are deleted by the caller's diff
        except OSError as exc:
            logger.warning(
                "cannot list %s: %s; keeping its documents as they were", self._abspath(item.rel), exc
            )
            unreadable.append(f"{item.rel}/" if item.rel else "")
            return []
        children: list[tuple[str, _WalkItem]] = []
        for entry in listed:
            rel = f"{item.rel}/{entry.name}" if item.rel else entry.name
            try:
                child = self._walk_item(entry, rel, item.ancestors)
            except OSError:
                continue  # vanished between listing and stat
            except Exception:
                logger.exception("folder source skipped %s after an unexpected error", entry.path)
                continue
            if child is not None:
                # Sorting a directory as "name/" keeps the whole walk in doc_id order ('.' < '/' < 'a').
                children.append((entry.name + "/" if child.stat is None else entry.name, child))
        children.sort(key=lambda pair: pair[0])
        return [child for _, child in children]

    def _walk_item(
        self, entry: os.DirEntry[str], rel: str, ancestors: frozenset[tuple[int, int]]
    ) -> _WalkItem | None:
        if entry.is_symlink():
            if not self._config.follow_symlinks:
                return None
            try:
                st = os.stat(entry.path)
            except OSError:
                return None  # dangling symlink or a loop of symlinks
        else:
            st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if not self._dir_visible(entry.name, rel):
                return None
            if key in ancestors:
                logger.warning(
                    "skipping %s: a symlink loop back to one of its parent directories", entry.path
                )
                return None
            return _WalkItem(rel, None, ancestors | {key})
        if stat.S_ISREG(st.st_mode) and self._file_visible(entry.name, rel):
            return _WalkItem(rel, st, ancestors)
        return None

    def _ancestor_keys(self, rel_dir: str) -> frozenset[tuple[int, int]]:
        """(st_dev, st_ino) of the root and every directory down to ``rel_dir``, for loop detection."""
        keys = set()
        path = self._root
        for part in [""] + (rel_dir.split("/") if rel_dir else []):
            path = os.path.join(path, part) if part else path
            key = self._stat_key(path)
            if key is not None:
                keys.add(key)
        return frozenset(keys)

    @staticmethod
    def _stat_key(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None

    def _visible(self, rel: str, *, is_dir: bool) -> bool:
        """Whether an event's path is inside the indexed set: every parent directory and the leaf."""
        parts = rel.split("/")
        for i, name in enumerate(parts[:-1]):
            if not self._dir_visible(name, "/".join(parts[: i + 1])):
                return False
        return self._dir_visible(parts[-1], rel) if is_dir else self._file_visible(parts[-1], rel)

    def _dir_visible(self, name: str, rel: str) -> bool:
        if name in ALWAYS_SKIPPED_DIRS or (self._config.skip_hidden and name.startswith(".")):
            return False
        return not _matches_any(self._config.exclude, rel)

    def _file_visible(self, name: str, rel: str) -> bool:
        if self._config.skip_hidden and name.startswith("."):
            return False
        return _matches_any(self._config.include, rel) and not _matches_any(self._config.exclude, rel)

    def _rel(self, path: str) -> str | None:
        """The doc_id (root-relative POSIX path) of ``path``; ``""`` for the root, ``None`` outside it."""
        if path == self._root:
            return ""
        if not path.startswith(self._root_prefix):
            return None
        return path[len(self._root_prefix) :].replace(os.sep, "/")

    def _abspath(self, rel: str) -> str:
        return os.path.join(self._root, *rel.split("/")) if rel else self._root


def _matches_any(patterns: Sequence[str], rel: str) -> bool:
    # Matched as "/<rel>": unanchored patterns behave exactly as on "<rel>", and a pattern with a leading
    # "/" (globmatch's anchor) is anchored at the root, like "/drafts/**".
    path = "/" + rel
    return any(globmatch(pattern, path) for pattern in patterns)


def _read_capped(f: BinaryIO, expected: int, cap: int) -> bytes | None:
    """Read to EOF, or ``None`` once more than ``cap`` bytes came (the file grew while we read it)."""
    chunks = []
    total = 0
    want = expected + 1  # one read for a file that did not change size; the +1 sees EOF
    while chunk := f.read(min(want, cap + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            return None
        want = 1 << 20
    return b"".join(chunks)
