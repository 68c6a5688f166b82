"""The folder source: a directory tree as document changes keyed by root-relative POSIX path, first as a
snapshot, then live from inotify events (or periodic scans), with periodic reconciliation.

Modules, one job each: ``source`` (``FolderSource``, the options), ``sync`` (one run: events, scans and
the diff against what was emitted), ``tree`` (which paths are documents; the walk), ``watch`` (the inotify
observer, its polling fallback, writes not yet closed), ``read`` (a file's bytes under the size cap, its
fingerprint and metadata), ``batch`` (changes grouped into one atomic ``emit``)."""

from __future__ import annotations

from .source import FolderSource

__all__ = ["FolderSource"]
