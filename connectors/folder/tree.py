"""Walking the folder: which paths under the root are documents (include/exclude globs, hidden names,
symlinks), the mapping between paths and doc ids, and a walk over the documents in doc id order."""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ragflow.filters import globmatch

if TYPE_CHECKING:
    from .source import FolderSource

logger = logging.getLogger("ragflow.connectors.folder")

ALWAYS_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ragflow"})
"""Directory names never descended into, whatever ``skip_hidden`` says."""


class WalkStopped(Exception):
    """``stop`` was set during a walk: what it yielded so far is not the whole tree."""


@dataclass(frozen=True, slots=True)
class _WalkItem:
    """A directory to list (``stat`` is ``None``) or a file to yield, with the directories above it."""

    rel: str
    stat: os.stat_result | None
    ancestors: frozenset[tuple[int, int]]


class FolderTree:
    """The indexed part of the tree under ``root`` (a real path), as ``config`` selects it."""

    def __init__(self, root: str, config: FolderSource) -> None:
        self.root = root
        self._root_prefix = root if root.endswith(os.sep) else root + os.sep
        self._config = config

    def walk(
        self, rel_dir: str, unreadable: list[str], stop: threading.Event
    ) -> Iterator[tuple[str, os.stat_result]]:
        """Yield ``(doc_id, stat)`` for every visible regular file under ``rel_dir``, in ``doc_id`` order.

        Directories that cannot be listed are appended to ``unreadable`` as doc_id prefixes. Raises
        ``WalkStopped`` once ``stop`` is set, so that a walk cut short never passes for a whole one."""
        stack = [_WalkItem(rel_dir, None, self._ancestor_keys(rel_dir))]
        while stack:
            item = stack.pop()
            if item.stat is not None:
                if stop.is_set():
                    raise WalkStopped
                yield item.rel, item.stat
            else:
                stack.extend(reversed(self._list_dir(item, unreadable)))

    def visible(self, rel: str, *, is_dir: bool) -> bool:
        """Whether an event's path is inside the indexed set: every parent directory and the leaf."""
        parts = rel.split("/")
        for i, name in enumerate(parts[:-1]):
            if not self._dir_visible(name, "/".join(parts[: i + 1])):
                return False
        return self._dir_visible(parts[-1], rel) if is_dir else self._file_visible(parts[-1], rel)

    def rel(self, path: str) -> str | None:
        """The doc_id (root-relative POSIX path) of ``path``; ``""`` for the root, ``None`` outside it."""
        if path == self.root:
            return ""
        if not path.startswith(self._root_prefix):
            return None
        return path[len(self._root_prefix) :].replace(os.sep, "/")

    def abspath(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def _list_dir(self, item: _WalkItem, unreadable: list[str]) -> list[_WalkItem]:
        try:
            with os.scandir(self.abspath(item.rel)) as entries:
                listed = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []  # vanished while we walked: its documents are deleted by the caller's diff
        except OSError as exc:
            logger.warning(
                "cannot list %s: %s; keeping its documents as they were", self.abspath(item.rel), exc
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
        path = self.root
        for part in [""] + (rel_dir.split("/") if rel_dir else []):
            path = os.path.join(path, part) if part else path
            key = dir_key(path)
            if key is not None:
                keys.add(key)
        return frozenset(keys)

    def _dir_visible(self, name: str, rel: str) -> bool:
        if name in ALWAYS_SKIPPED_DIRS or (self._config.skip_hidden and name.startswith(".")):
            return False
        return not _matches_any(self._config.exclude, rel)

    def _file_visible(self, name: str, rel: str) -> bool:
        if self._config.skip_hidden and name.startswith("."):
            return False
        return _matches_any(self._config.include, rel) and not _matches_any(self._config.exclude, rel)


def dir_key(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the directory at ``path``; ``None`` if no directory is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _matches_any(patterns: Sequence[str], rel: str) -> bool:
    # Matched as "/<rel>": unanchored patterns behave exactly as on "<rel>", and a pattern with a leading
    # "/" (globmatch's anchor) is anchored at the root, like "/drafts/**".
    path = "/" + rel
    return any(globmatch(pattern, path) for pattern in patterns)
