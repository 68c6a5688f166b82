"""Reading one file of the folder: its bytes under a size cap (an error instead when over it or unreadable),
the fingerprint the source keeps of it, and its document metadata (with what ``metadata_from_paths``
derives from its path)."""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import pwd
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ragflow.errors import ConfigError, FilterError
from ragflow.filters import glob_to_regex

# A file whose ctime is this close to the moment we read it may change again within the same
# filesystem timestamp tick (coarse clocks, 2 s on FAT), so scans never trust its fingerprint alone.
_RACY_WINDOW_NS = 2_000_000_000


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


def read_file(abspath: str, follow_symlinks: bool, cap: int) -> _FileRead | None:
    """Read a regular file whole; ``None`` when no regular file is there (any more)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO swapped in must not hang us
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(abspath, flags)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # it became a symlink we do not follow, or a symlink loop
        return _unreadable(abspath, exc, follow_symlinks)
    with open(fd, "rb", closefd=True) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > cap:
            return _FileRead(st, None, _too_large(abspath, st.st_size, cap))
        try:
            data = _read_capped(f, st.st_size, cap)
        except OSError as exc:
            return _FileRead(st, None, f"cannot read {abspath}: {exc.strerror} (errno {exc.errno})")
        if data is None:
            return _FileRead(st, None, _too_large(abspath, None, cap))
        return _FileRead(st, data, None)


def file_metadata(abspath: str, st: os.stat_result, seen_ns: int) -> dict[str, Any]:
    """A file document's metadata, with Pathway's names."""
    return {
        "path": abspath,
        "size": st.st_size,
        "modified_at": st.st_mtime_ns // 1_000_000_000,
        "created_at": int(getattr(st, "st_birthtime", st.st_ctime)),
        "seen_at": seen_ns // 1_000_000_000,
        "seen_at_ns": seen_ns,
        "owner": _owner_name(st.st_uid),
    }


PathMetadataRules = Mapping[str, Mapping[str, str | int | float | bool]]
"""``{glob pattern with {name} captures: {metadata key: value or template}}``."""

_CAPTURE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CAPTURE_IN_CLASS = re.compile(r"\[[!^]?\]?[^\]]*\{[A-Za-z_][A-Za-z0-9_]*\}[^\]]*\]")
_SENTINEL = "\x00"  # survives glob_to_regex (re.escape leaves it alone) and never occurs in a path
# Keys the folder source sets itself; a path rule may not set them (scopes trust them).
_FILE_KEYS = frozenset(
    {"path", "size", "modified_at", "created_at", "seen_at", "seen_at_ns", "owner", "doc_id"}
)


class PathMetadata:
    """Metadata derived from a file's root-relative path by ``metadata_from_paths`` rules.

    A rule's pattern is a glob (``ragflow.filters.globmatch`` semantics) in which ``{name}`` matches one
    whole path segment and captures it; its values are constants or templates naming captures
    (``"{team}"``, ``"team-{team}"``). Every rule whose pattern matches applies, in the order given, a
    later one overriding a key an earlier one set.

    Example:
        >>> rules = PathMetadata({"teams/{team}/**": {"team": "{team}"}, "**/drafts/**": {"draft": True}})
        >>> rules("teams/support/drafts/faq.md")
        {'team': 'support', 'draft': True}
        >>> rules("README.md")
        {}

    Raises:
        ConfigError: a pattern is not a valid glob, captures a name twice or in a ``[...]`` class, a
            template names a capture its pattern lacks, a value is not a string, number or boolean, or a
            key is one the folder source sets itself.
    """

    __slots__ = ("_rules", "digest")

    def __init__(self, rules: PathMetadataRules) -> None:
        self._rules = [
            (_capture_regex(pattern), _checked_values(pattern, values)) for pattern, values in rules.items()
        ]
        plain = {pattern: dict(values) for pattern, values in rules.items()}
        self.digest = hashlib.blake2b(json.dumps(plain, sort_keys=True).encode(), digest_size=8).hexdigest()
        """Names these rules: documents emitted under other rules get their metadata again on resume."""

    def __call__(self, relpath: str) -> dict[str, Any]:
        derived: dict[str, Any] = {}
        rooted = "/" + relpath  # as include/exclude match: a pattern starting with '/' anchors at the root
        for regex, values in self._rules:
            match = regex.fullmatch(rooted)
            if match is None:
                continue
            captured = match.groupdict()
            for key, value in values.items():
                derived[key] = _filled(value, captured) if isinstance(value, str) else value
        return derived


def _filled(template: str, captured: Mapping[str, str]) -> str:
    return _CAPTURE.sub(lambda match: captured[match.group(1)], template)


def _capture_regex(pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(
            f"FolderSource metadata_from_paths patterns must be non-empty strings, got {pattern!r}"
        )
    names = _CAPTURE.findall(pattern)
    if len(set(names)) != len(names):
        raise ConfigError(f"FolderSource metadata_from_paths pattern {pattern!r} captures a name twice")
    if _CAPTURE_IN_CLASS.search(pattern):
        raise ConfigError(
            f"FolderSource metadata_from_paths pattern {pattern!r}: a {{name}} capture inside '[...]' "
            "is not allowed"
        )
    try:
        translated = glob_to_regex(_CAPTURE.sub(_SENTINEL, pattern)).pattern
    except FilterError as exc:
        raise ConfigError(f"FolderSource metadata_from_paths: {exc}") from exc
    pieces = translated.split(_SENTINEL)
    regex = pieces[0] + "".join(
        f"(?P<{name}>[^/]+){piece}" for name, piece in zip(names, pieces[1:], strict=True)
    )
    try:
        return re.compile(regex, re.DOTALL)
    except re.error as exc:
        raise ConfigError(f"FolderSource metadata_from_paths pattern {pattern!r}: {exc}") from exc


def _checked_values(pattern: str, values: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(values, Mapping) or not values:
        raise ConfigError(
            f"FolderSource metadata_from_paths[{pattern!r}] must map metadata keys to values, "
            f"e.g. {{team: '{{team}}'}}; got {values!r}"
        )
    captures = set(_CAPTURE.findall(pattern))
    for key, value in values.items():
        if not isinstance(key, str) or not key or key in _FILE_KEYS:
            raise ConfigError(
                f"FolderSource metadata_from_paths[{pattern!r}]: key {key!r} is not allowed; the folder "
                f"source sets {', '.join(sorted(_FILE_KEYS))} itself"
            )
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(
                f"FolderSource metadata_from_paths[{pattern!r}][{key!r}] must be a string, number or "
                f"boolean, got {value!r}"
            )
        missing = set(_CAPTURE.findall(value)) - captures if isinstance(value, str) else set()
        if missing:
            raise ConfigError(
                f"FolderSource metadata_from_paths[{pattern!r}][{key!r}] names {', '.join(sorted(missing))}, "
                f"which the pattern does not capture (it captures {', '.join(sorted(captures)) or 'nothing'})"
            )
    return dict(values)


def _unreadable(abspath: str, exc: OSError, follow_symlinks: bool) -> _FileRead | None:
    try:
        st = os.stat(abspath, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    name = errno.errorcode.get(exc.errno or 0, "?")
    error = f"cannot read {abspath}: {exc.strerror} ({name}); fix its permissions or exclude it"
    return _FileRead(st, None, error)


def _too_large(abspath: str, size: int | None, cap: int) -> str:
    """``size`` is ``None`` when the file grew past the cap while it was being read."""
    what = f"is {size} bytes, over" if size is not None else "grew while being read past"
    return f"{abspath} {what} the cap of {cap} bytes; raise FolderSource(max_file_size=...) to index it"


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


@functools.lru_cache(maxsize=256)
def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
