"""The folder source's public face: ``FolderSource``, its options and their checks. The work of one run
lives in ``sync`` (and the modules it draws on: ``tree``, ``watch``, ``read``, ``batch``)."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ragflow.errors import ConfigError
from ragflow.filters import glob_patterns
from ragflow.sources import ChangeKind, DocumentChange, EmitChanges, SourceStatus

from .read import PathMetadata, PathMetadataRules
from .sync import _FolderSync

__all__ = ["FolderSource"]


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
        metadata_from_paths: Metadata derived from each file's root-relative path, so that filters and
            API key scopes can select by team or project without tagging files by hand:
            ``{"teams/{team}/**": {"team": "{team}"}}`` gives ``teams/support/faq.md`` the metadata
            ``team: support``. ``{name}`` in a pattern captures one path segment; values are constants or
            templates of captures; every matching rule applies, later ones winning (``PathMetadata``).
            Changing the rules re-emits every file's metadata on the next start (not its embeddings).

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
    - If the root disappears, every document is deleted and the source keeps running, unhealthy (its
      ``status`` says why); when the root comes back, it is rescanned and watched again, and healthy.

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
        metadata_from_paths: PathMetadataRules | None = None,
    ) -> None:
        self.root = Path(root)
        self.include = glob_patterns("FolderSource", "include", include)
        self.exclude = glob_patterns("FolderSource", "exclude", exclude)
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
        self.metadata_from_paths = PathMetadata(metadata_from_paths) if metadata_from_paths else None
        self.status = SourceStatus()
        """Health (unhealthy while the root is missing), for ``DocumentStore.sources()`` and ``/metrics``."""

    def run(
        self,
        emit: EmitChanges,
        stop: threading.Event,
        mode: Literal["static", "streaming"],
        position: Any = None,
    ) -> None:
        """Emit the snapshot (or, from ``position``, what changed since), then live changes until ``stop``."""
        rules = self.metadata_from_paths
        if rules is None:
            _FolderSync(self, emit, stop).run(mode, position)
            return
        _FolderSync(self, _with_path_metadata(emit, rules), stop).run(mode, _under_rules(position, rules))


# The key of a file's position that names the metadata_from_paths rules its metadata was derived with.
_RULES_KEY = "metadata_rules"


def _with_path_metadata(emit: EmitChanges, rules: PathMetadata) -> EmitChanges:
    """``emit`` with each upsert's metadata completed from its path, and its position naming the rules."""

    def tagged(change: DocumentChange) -> DocumentChange:
        if change.kind is not ChangeKind.UPSERT:
            return change
        metadata = {**rules(change.doc_id), **change.metadata}  # what the source read wins
        position = (
            {**change.position, _RULES_KEY: rules.digest}
            if isinstance(change.position, Mapping)
            else change.position
        )
        return dataclasses.replace(change, metadata=metadata, position=position)

    def emit_tagged(changes: list[DocumentChange], *args: Any, **kwargs: Any) -> None:
        emit([tagged(change) for change in changes], *args, **kwargs)

    return emit_tagged


def _under_rules(position: Any, rules: PathMetadata) -> Any:
    """A saved position where each file emitted under other rules is marked unreadable, so that the run
    reads it again and emits it with the metadata of the current rules (or its deletion, if it is gone)."""
    if not isinstance(position, Mapping):
        return position
    return {
        doc_id: saved
        if isinstance(saved, Mapping) and saved.get(_RULES_KEY) == rules.digest
        else {_RULES_KEY: None}
        for doc_id, saved in position.items()
    }


def _interval(option: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ConfigError(f"FolderSource {option} must be a positive number of seconds or None, got {value}")
    return value
