"""The on-disk cache when its file is damaged or old: a damaged entry or page costs recomputation of what
was lost, once, never a wrong result, a crash or a retry at every lookup."""

from __future__ import annotations

import errno
import logging
import pickle
import random
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragflow.engine import DiskCache, content_key
from ragflow.engine import cache as cache_module


def filled(path: Path, count: int = 3000) -> list[bytes]:
    cache = DiskCache(path)
    keys = [content_key("model", f"text {i}") for i in range(count)]
    cache.put_many({key: np.full(96, i, dtype=np.float32) for i, key in enumerate(keys)})
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return keys


def damage_page(path: Path, page: int) -> None:
    with path.open("r+b") as f:
        f.seek(page * 4096)
        f.write(random.Random(page).randbytes(4096))


def set_aside(path: Path) -> list[Path]:
    return [p for p in path.parent.glob(path.name + ".corrupt-*") if not p.name.endswith(("-wal", "-shm"))]


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_damaged_page_is_salvaged_once(tmp_path: Path, where: str, caplog: Any) -> None:
    path = tmp_path / "cache.sqlite"
    keys = filled(path)
    pages = path.stat().st_size // 4096
    damage_page(path, pages // 2 if where == "middle" else pages - 1)
    cache = DiskCache(path)
    with caplog.at_level(logging.ERROR, "ragflow.engine.cache"):
        found = cache.get_many(keys)
    assert "kept the" in caplog.text and len(set_aside(path)) == 1
    assert len(found) > len(keys) * 0.9, "what could be read was kept"
    for key, vector in found.items():  # and none of it is wrong
        assert float(vector[0]) == keys.index(key)
    caplog.clear()
    assert cache.get_many(keys).keys() == found.keys()
    assert "damaged" not in caplog.text, "salvaged once, not at every lookup"


def test_a_salvage_without_space_starts_an_empty_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    path = tmp_path / "cache.sqlite"
    keys = filled(path)
    damage_page(path, path.stat().st_size // 4096 // 2)

    def no_space(db: sqlite3.Connection, target: Path) -> int:
        target.write_bytes(b"partial copy")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module, "_copy_readable", no_space)
    cache = DiskCache(path)
    with caplog.at_level(logging.ERROR, "ragflow.engine.cache"):
        assert cache.get_many(keys) == {}
    assert "cannot salvage" in caplog.text and "started empty" in caplog.text
    assert not (tmp_path / "cache.sqlite.salvage").exists(), "no leftover fills the disk"
    assert len(set_aside(path)) == 1
    cache.put_many({keys[0]: np.ones(96, dtype=np.float32)})
    assert list(cache.get_many(keys)) == [keys[0]]


def test_values_written_before_checksums_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    key = content_key("model", "text")
    with sqlite3.connect(path) as db:  # the layout of a cache written before values carried checksums
        db.execute("CREATE TABLE results (key BLOB PRIMARY KEY, value BLOB NOT NULL)")
        db.execute("INSERT INTO results VALUES (?, ?)", (key, pickle.dumps([1.0, 2.0], protocol=5)))
    db.close()
    assert DiskCache(path).get_many([key]) == {key: [1.0, 2.0]}
