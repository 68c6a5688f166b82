"""Why a write to the state directory failed, said so that people can act on it: a full disk is named as
such, with the free space left and what to do."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

__all__ = ["failure_reason", "human_size", "is_disk_full"]

_SQLITE_FULL = 13


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the file system is full (or the quota spent), from the OS or from SQLite."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_FULL) or "disk is full" in str(exc)


def failure_reason(exc: BaseException, directory: Path) -> str:
    """``exc`` said for the log: a full disk with the space left in ``directory`` and what to do; any other
    error as it is."""
    if not is_disk_full(exc):
        return f"{type(exc).__name__}: {exc}"
    try:
        free = f"{human_size(shutil.disk_usage(directory).free)} free"
    except OSError:
        free = "free space unknown"
    return (
        f"no space to write in {directory} ({free} on its file system; SQLite said: {exc}); free some "
        "space there or move the state directory (--state-dir)"
    )


def human_size(n: float) -> str:
    """``n`` bytes for people: ``512 B``, ``3.2 KiB``, ``1.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
