"""Live change events of a ``DocumentStore`` for asyncio code: ``StoreUpdate`` (what one epoch made
searchable) and ``UpdateStream``, the async iterator ``store.updates()`` returns.

Back-pressure is by replacement, not by queueing: a stream holds at most one undelivered update. When the
engine finishes an epoch before the consumer has taken the previous update, the newer one replaces it and
the stream counts the replaced one as missed, so a consumer that stops reading costs one report of memory,
however long it stops, and the engine never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType

from .reports import DocumentError

__all__ = ["StoreUpdate", "UpdateHub", "UpdateStream"]

_FAILURE_CHECK_SECONDS = 0.5
"""How often a waiting stream looks whether the engine failed (a failed engine tells no one)."""


@dataclass(frozen=True, slots=True)
class StoreUpdate:
    """What one epoch of the store made searchable, as ``store.updates()`` yields it.

    Example:
        >>> update = StoreUpdate(epoch=7, indexed=("notes.md",), removed=(), chunks_embedded=2,
        ...                      errors=(), searchable_at=1700000000.0, lag=0.2, seconds=0.05)
        >>> update.documents, update.missed
        (('notes.md',), 0)
    """

    epoch: int
    """The engine's epoch number (increasing; gaps are epochs that changed no document)."""
    indexed: tuple[str, ...]
    """Documents added or replaced in this epoch (sorted ids), including those that failed to parse."""
    removed: tuple[str, ...]
    """Documents deleted in this epoch (sorted ids): no query returns them any more."""
    chunks_embedded: int
    """Chunk texts embedded in this epoch (those found in the embedding cache are not counted)."""
    errors: tuple[DocumentError, ...]
    """The errors of this epoch's documents (parse errors, chunks that could not be embedded)."""
    searchable_at: float
    """When the epoch's changes became searchable (Unix seconds)."""
    lag: float | None
    """Freshness: seconds from the source seeing the oldest change of this epoch to it being searchable
    (``None`` when the epoch indexed no document)."""
    seconds: float
    """How long the engine took to process the epoch."""
    missed: int = 0
    """Updates this stream skipped since the one it delivered before (a slow consumer gets the latest
    update only; ``store.documents()`` tells what the skipped ones changed, by ``indexed_at``)."""

    @property
    def documents(self) -> tuple[str, ...]:
        """Every document the epoch changed: ``indexed`` and ``removed``, sorted."""
        return tuple(sorted((*self.indexed, *self.removed)))


class UpdateStream:
    """``async for update in store.updates():`` — each epoch's ``StoreUpdate``, latest first when the
    consumer falls behind (see ``StoreUpdate.missed``).

    A stream receives the updates of epochs that end after it was created (before its first ``await``
    too). It ends when the store stops, and raises what stopped the engine if the engine fails. It belongs
    to the event loop that first iterates it; ``aclose()`` (or ``async with``) stops receiving at once,
    and a stream dropped without closing stops receiving when it is garbage-collected.
    """

    def __init__(self, hub: UpdateHub, failure: Callable[[], BaseException | None]) -> None:
        self._hub = hub
        self._failure = failure
        self._lock = threading.Lock()
        self._pending: StoreUpdate | None = None
        self._missed = 0
        self._ended = False
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        hub.subscribe(self)

    def __aiter__(self) -> UpdateStream:
        return self

    async def __anext__(self) -> StoreUpdate:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._pending is not None:
                    update = replace(self._pending, missed=self._missed)
                    self._pending, self._missed = None, 0
                    return update
                if self._ended:
                    raise StopAsyncIteration
                woken: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, woken)
            try:
                await asyncio.wait({woken}, timeout=_FAILURE_CHECK_SECONDS)
            finally:
                with self._lock:
                    if self._waiter is not None and self._waiter[1] is woken:
                        self._waiter = None
            failure = self._failure()
            if failure is not None and not woken.done():
                self.close()
                raise failure

    async def aclose(self) -> None:
        """Stop receiving updates; a waiting ``__anext__`` ends the iteration."""
        self.close()

    def close(self) -> None:
        """``aclose`` for code without a loop at hand (any thread)."""
        self._hub.unsubscribe(self)
        self._end()

    async def __aenter__(self) -> UpdateStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- called by the hub (engine thread) ------------------------------------------------------

    def _offer(self, update: StoreUpdate) -> None:
        with self._lock:
            if self._ended:
                return
            if self._pending is not None:
                self._missed += 1
            self._pending = update
            waiter, self._waiter = self._waiter, None
        _wake(waiter)

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            waiter, self._waiter = self._waiter, None
        _wake(waiter)


def _wake(waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None) -> None:
    if waiter is None:
        return
    loop, future = waiter
    with contextlib.suppress(RuntimeError):  # the consumer's loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class UpdateHub:
    """The streams of one store; ``publish`` hands each the epoch's update (engine thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: weakref.WeakSet[UpdateStream] = weakref.WeakSet()
        self._stopped = False

    @property
    def listening(self) -> bool:
        """Whether any stream is open (an update is built only then)."""
        return len(self._streams) > 0

    def subscribe(self, stream: UpdateStream) -> None:
        with self._lock:
            stopped = self._stopped
            if not stopped:
                self._streams.add(stream)
        if stopped:
            stream._end()

    def unsubscribe(self, stream: UpdateStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def publish(self, update: StoreUpdate) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream._offer(update)

    def open(self) -> None:
        """The store (re)starts: streams created from now on receive updates."""
        with self._lock:
            self._stopped = False

    def stop(self) -> None:
        """The store stopped: every stream ends once it has delivered what it holds."""
        with self._lock:
            self._stopped = True
            streams, self._streams = list(self._streams), weakref.WeakSet()
        for stream in streams:
            stream._end()
