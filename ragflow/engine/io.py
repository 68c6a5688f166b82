"""Sources push changes into the engine from their own threads; sinks receive each epoch's consolidated
changes at once. This module holds both protocols and the in-memory implementations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Literal, Protocol

from .changes import Change

__all__ = ["CallbackSink", "ChangeQueue", "Collection", "Mode", "Push", "Sink", "Source", "StaticSource"]

Mode = Literal["static", "streaming"]
Push = Callable[..., None]
"""``push(changes, position=None)``: one atomic group of ``(key, row, diff)`` changes."""


class Source(Protocol):
    """Pushes changes from its own thread. ``run`` returns when the source is finished: in ``static``
    mode after its snapshot, in ``streaming`` mode when ``stop`` is set (or its stream ends)."""

    name: str

    def run(self, push: Push, stop: threading.Event, mode: Mode) -> None: ...


class Sink(Protocol):
    """Receives one epoch's consolidated output changes in a single call, so it can apply them atomically."""

    def on_epoch(self, epoch: int, changes: list[Change]) -> None: ...


class StaticSource:
    """Pushes fixed groups of changes, then finishes: for tests and small static inputs."""

    def __init__(self, groups: Iterable[Iterable[tuple[Any, Any, int]]], name: str = "static") -> None:
        self.groups = [[Change(*c) for c in group] for group in groups]
        self.name = name

    def run(self, push: Push, stop: threading.Event, mode: Mode) -> None:
        for group in self.groups:
            if stop.is_set():
                return
            push(group)


class ChangeQueue:
    """A source the application feeds directly: ``insert``/``delete``/``push`` from any thread,
    ``close`` to finish it."""

    def __init__(self, name: str = "queue") -> None:
        self.name = name
        self._lock = threading.Condition()
        self._groups: list[tuple[list[Change], Any]] = []
        self._closed = False
        self._in_flight = 0  # groups taken from _groups but not yet handed to the engine

    def pending(self) -> int:
        """Groups queued here and not yet handed to the engine (``Engine.wait_idle`` waits for them)."""
        with self._lock:
            return len(self._groups) + self._in_flight

    def push(self, changes: Iterable[tuple[Any, Any, int]], position: Any = None) -> None:
        """Queue one atomic group of changes."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"source {self.name!r} is closed; create a new ChangeQueue")
            self._groups.append(([Change(*c) for c in changes], position))
            self._lock.notify()

    def insert(self, key: Hashable, row: Any) -> None:
        self.push([(key, row, 1)])

    def delete(self, key: Hashable, row: Any) -> None:
        self.push([(key, row, -1)])

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()

    def run(self, push: Push, stop: threading.Event, mode: Mode) -> None:
        while True:
            with self._lock:
                while not self._groups and not self._closed and not stop.is_set():
                    self._lock.wait(0.1)
                groups, self._groups = self._groups, []
                self._in_flight = len(groups)
                finished = self._closed or stop.is_set()
            for changes, position in groups:
                push(changes, position)
                with self._lock:
                    self._in_flight -= 1
            if finished:
                return


class Collection:
    """A sink that keeps the current contents of a table: ``key -> {row: multiplicity}``."""

    def __init__(self) -> None:
        self._rows: dict[Hashable, dict[Any, int]] = {}
        self._lock = threading.Lock()
        self.epochs = 0

    def on_epoch(self, epoch: int, changes: list[Change]) -> None:
        with self._lock:
            for key, row, diff in changes:
                rows = self._rows.setdefault(key, {})
                total = rows.get(row, 0) + diff
                if total:
                    rows[row] = total
                else:
                    del rows[row]
                    if not rows:
                        del self._rows[key]
            self.epochs += 1

    def multiset(self) -> dict[tuple[Hashable, Any], int]:
        """Every ``(key, row)`` with its multiplicity."""
        with self._lock:
            return {(key, row): m for key, rows in self._rows.items() for row, m in rows.items()}

    def as_dict(self) -> dict[Hashable, Any]:
        """``key -> row`` for tables with one row per key (raises if a key holds several rows)."""
        with self._lock:
            result = {}
            for key, rows in self._rows.items():
                if len(rows) != 1 or next(iter(rows.values())) != 1:
                    raise ValueError(f"key {key!r} holds {rows!r}, not exactly one row")
                result[key] = next(iter(rows))
            return result

    def __len__(self) -> int:
        with self._lock:
            return sum(m for rows in self._rows.values() for m in rows.values())

    def __iter__(self) -> Iterator[tuple[Hashable, Any]]:
        return iter([pair for pair, mult in self.multiset().items() for _ in range(mult)])


class CallbackSink:
    """Calls ``fn(epoch, changes)`` for each epoch with output."""

    def __init__(self, fn: Callable[[int, list[Change]], None]) -> None:
        self.fn = fn

    def on_epoch(self, epoch: int, changes: list[Change]) -> None:
        self.fn(epoch, changes)
