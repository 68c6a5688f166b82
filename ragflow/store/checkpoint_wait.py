"""The store's side of ``ragflow.sources.CheckpointWait``: lets a source wait until every change it has
emitted is applied and in a committed checkpoint (the Kafka source, before it lets a partition go)."""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..engine import Engine, EpochReport
from ..persistence import Checkpointer
from ..pipeline import DocumentFeed

__all__ = ["CheckpointWaits"]


class CheckpointWaits:
    """Follows each feed's pushes through the engine and gives each source that declares a
    ``wait_checkpointed`` attribute a function that waits for them (see ``ragflow.sources``).

    Built after the store registered its own epoch listener, so that when this one hears of an epoch,
    the epoch's documents and positions are already queued for the checkpoint that ``flush`` writes.
    """

    def __init__(
        self, engine: Engine, feeds: Sequence[DocumentFeed], checkpointer: Checkpointer | None
    ) -> None:
        self._engine = engine
        self._checkpointer = checkpointer
        self._cond = threading.Condition()
        self._pushed: dict[str, collections.deque[tuple[int, Any]]] = {}
        """Per source: (sequence number, position) of the pushes the engine has not applied yet."""
        self._last: dict[str, int] = {}
        for feed in feeds:
            if hasattr(feed.source, "wait_checkpointed"):
                self._pushed[feed.name] = collections.deque()
                self._last[feed.name] = 0
                feed.before_push = functools.partial(self._before_push, feed.name)
                setattr(feed.source, "wait_checkpointed", functools.partial(self.wait, feed.name))  # noqa: B010
        if self._pushed:
            engine.on_epoch(self._on_epoch)

    def wait(self, name: str, timeout: float) -> bool:
        """Block until every push source ``name`` made before this call is applied and, with a state
        directory, committed in a checkpoint; ``False`` if that did not happen within ``timeout`` seconds
        (the engine failed or stopped, or a checkpoint write failed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._last[name]
            while self._pushed[name] and self._pushed[name][0][0] <= target:
                left = deadline - time.monotonic()
                if left <= 0 or self._engine.failure is not None:
                    return False
                self._cond.wait(min(left, 0.1))
        return self._checkpointer.flush() if self._checkpointer is not None else True

    def _before_push(self, name: str, position: Any) -> None:
        with self._cond:
            self._last[name] += 1
            self._pushed[name].append((self._last[name], position))

    def _on_epoch(self, report: EpochReport) -> None:
        with self._cond:
            for name, pushed in self._pushed.items():
                applied = report.positions.get(name)
                # the engine applies a source's pushes in order and reports the last one's position
                if applied is not None and any(p is applied for _, p in pushed):
                    while pushed:
                        _, position = pushed.popleft()
                        if position is applied:
                            break
            self._cond.notify_all()
