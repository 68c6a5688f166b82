"""The generations of a state directory, on disk: the pointer file that names the active one (replaced
atomically: written beside, fsynced, renamed), and each generation's recipe, the settings it was built
with (docs/persistence.md, "Generations").

A generation is a state directory of its own: the root generation ``.`` is the state directory itself
(where every state lived before generations), the next ones are ``generations/g1``, ``generations/g2``...
The embedding cache (keyed by model) and the uploads stay at the root, shared by all generations."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..persistence import STATE_FILE
from ..retrieval import LEXICAL_FILE
from .parts import GRAPHS_DIR

__all__ = [
    "GENERATIONS_DIR",
    "POINTER_FILE",
    "RECIPE_FILE",
    "Pointer",
    "UploadFanout",
    "active_state_dir",
    "leftover_generations",
    "next_generation",
    "read_pointer",
    "read_recipe",
    "remove_generation",
    "write_pointer",
    "write_recipe",
]

GENERATIONS_DIR = "generations"
POINTER_FILE = "generation.json"
"""At the root of the state directory: which generation serves (absent: the root one, ``.``)."""
RECIPE_FILE = "recipe.json"
"""In each generation: the settings it was built with, so that it can be served (and kept up to date)
after the configuration changed, until the next generation replaces it."""


@dataclass
class Pointer:
    """What ``generation.json`` says."""

    active: str = "."
    """The generation that serves, as a path relative to the state directory."""
    building: str | None = None
    """The generation a migration is building (resumed after a restart), or none."""
    previous: str | None = None
    """The generation the last swap replaced, kept for a rollback (removed on the next start)."""
    declined: dict[str, str] | None = None
    """The identity a migration was aborted or rolled back from: a restart with that configuration keeps
    serving the active generation instead of migrating again (``ragflow migrate start`` clears it)."""
    swapped_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """The last swaps, aborts and rollbacks (at most 20), newest last."""

    def note(self, event: str, **details: Any) -> None:
        self.history = [*self.history, {"event": event, "at": time.time(), **details}][-20:]


def read_pointer(root: Path) -> Pointer:
    path = root / POINTER_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Pointer()
    known = {k: v for k, v in data.items() if k in Pointer.__dataclass_fields__}
    return Pointer(**known)


def write_pointer(root: Path, pointer: Pointer) -> None:
    """Replace ``generation.json`` in one step: a crash leaves the old file or the new one, never a mix."""
    _write_atomically(root / POINTER_FILE, json.dumps(asdict(pointer), indent=2).encode())


def active_state_dir(root: Path) -> Path:
    """The state directory of the generation that serves in ``root`` (``root`` itself before any
    migration)."""
    return root / read_pointer(root).active


def read_recipe(directory: Path) -> dict[str, Any] | None:
    try:
        recipe: dict[str, Any] = json.loads((directory / RECIPE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return recipe


def write_recipe(directory: Path, recipe: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / RECIPE_FILE, json.dumps(recipe, indent=2, sort_keys=True).encode())


def next_generation(root: Path, pointer: Pointer) -> str:
    """A name no generation on disk or in ``pointer`` has: ``generations/g<N>``."""
    taken = [pointer.active, pointer.building or "", pointer.previous or ""]
    numbers = [int(p.rsplit("/g", 1)[1]) for p in taken if p.startswith(f"{GENERATIONS_DIR}/g")]
    base = root / GENERATIONS_DIR
    if base.is_dir():
        numbers += [int(d.name[1:]) for d in base.iterdir() if d.name[:1] == "g" and d.name[1:].isdigit()]
    return f"{GENERATIONS_DIR}/g{max(numbers, default=0) + 1}"


def remove_generation(root: Path, name: str) -> None:
    """Delete generation ``name``'s files: its directory, or for the root one its state files and its
    index's kept graphs only (the cache, the uploads and the other generations stay)."""
    if name == ".":
        files = [f"{name}{suffix}" for name in (STATE_FILE, LEXICAL_FILE) for suffix in ("", "-wal", "-shm")]
        for file in [*files, RECIPE_FILE, GRAPHS_DIR]:
            with contextlib.suppress(FileNotFoundError):
                _remove(root / file)
        return
    directory = root / name
    if directory.resolve().parent != (root / GENERATIONS_DIR).resolve():
        raise ValueError(f"not a generation of {root}: {name!r}")
    shutil.rmtree(directory, ignore_errors=True)


def leftover_generations(root: Path, keep: set[str]) -> list[str]:
    """The generation directories on disk that ``keep`` does not name (an aborted build, a kept
    previous generation after a restart)."""
    base = root / GENERATIONS_DIR
    if not base.is_dir():
        return []
    return sorted(
        f"{GENERATIONS_DIR}/{d.name}" for d in base.iterdir() if f"{GENERATIONS_DIR}/{d.name}" not in keep
    )


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power loss
    finally:
        os.close(fd)


class _HasGenerations(Protocol):
    def generations(self) -> list[Any]: ...


class UploadFanout:
    """What ``POST /v1/documents`` puts uploads into when the store has generations: every running
    generation's upload source (they keep the documents in the same directory), so that an upload is
    indexed by the generation being built too."""

    def __init__(self, store: _HasGenerations, name: str) -> None:
        self.store = store
        self.name = name

    def _sources(self) -> list[Any]:
        found = []
        for generation in self.store.generations():
            for feed in generation.feeds:
                if feed.name == self.name:
                    found.append(feed.source)
        return found

    def doc_id(self, name: str) -> str:
        return str(self._sources()[0].doc_id(name))

    def put(self, name: str, data: bytes, metadata: Mapping[str, Any] | None = None) -> Any:
        changes = [source.put(name, data, metadata) for source in self._sources()]
        return changes[0]

    def delete(self, name: str) -> bool:
        results = [source.delete(name) for source in self._sources()]
        return bool(results[0])

    def ids(self) -> list[str]:
        return list(self._sources()[0].ids())
