"""The asyncio face of ``DocumentStore``: ``async with``, ``aretrieve``, ``await_until_fresh``,
``updates()`` and ``from_config``. ``DocumentStore`` inherits them from ``AsyncStoreMethods``.

The event loop never waits on the engine: every call that could block (starting and stopping, embedding
a query and searching, waiting for freshness) runs on a small thread pool the store owns, and the loop
only awaits its result. Live updates reach the loop through ``UpdateStream`` (see ``updates``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .updates import StoreUpdate, UpdateStream

if TYPE_CHECKING:
    from types import TracebackType

    from ..config import RagflowConfig
    from ..documents import Embedder, Hit
    from ..engine import EpochReport
    from .document_store import DocumentStore

__all__ = ["AsyncStoreMethods"]

_T = TypeVar("_T")

log = logging.getLogger("ragflow.store")

QUERY_THREADS = 4
"""Threads a store gives its async calls: queries beyond this many wait for one, on no thread."""

_FRESHNESS_SLICE = 0.1
"""``await_until_fresh`` waits in slices this long, so a thread is never held by a cancelled wait and
queries interleave with waits on the same threads."""


class AsyncStoreMethods:
    """The async methods of ``DocumentStore`` (and ``from_config``); see the module docstring."""

    _async_lock = threading.Lock()  # guards the creation of a store's pool
    _pool: ThreadPoolExecutor | None = None
    _embedded_before = 0  # chunks embedded before the epoch being published

    @property
    def _store(self) -> DocumentStore:
        return cast("DocumentStore", self)  # the only class these methods are mixed into

    # -- making one -----------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: str | os.PathLike[str] | RagflowConfig, *, embedder: Embedder | None = None
    ) -> DocumentStore:
        """The store a YAML configuration describes (the file ``ragflow serve --config`` reads), not
        started. ``embedder`` replaces the configured one.

        Raises:
            ConfigError: the file is missing or invalid (the message names the line).
        """
        from ..config import RagflowConfig, load_config

        if not isinstance(config, RagflowConfig):
            config = load_config(config)
        return config.build_store(embedder=embedder)

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> DocumentStore:
        """``start`` off the loop, and begin loading the query model so the first query is fast."""
        from .query_warmup import query_warmup

        store = await self._off_loop(self._store.start)
        query_warmup(store)
        return store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``stop`` off the loop; a cancelled exit still stops the store."""
        await asyncio.shield(self._off_loop(self._store.stop))

    # -- queries --------------------------------------------------------------------------------

    async def aretrieve(
        self,
        query: str,
        k: int = 3,
        metadata_filter: str | None = None,
        filepath_globpattern: str | None = None,
        **options: Any,
    ) -> list[Hit]:
        """``retrieve`` without blocking the loop: the query is embedded and searched on the store's
        threads. Cancelling the await drops the result (the search itself runs to its end). ``options``
        are ``retrieve``'s keywords (``search_mode``, ``rerank``, ``diversity``, ``context_window``...).

        Example:
            >>> hits = await store.aretrieve("rotate keys", k=5, search_mode="hybrid")  # doctest: +SKIP
        """
        search = functools.partial(self._store.retrieve, **options)
        return await self._off_loop(search, query, k, metadata_filter, filepath_globpattern)

    async def await_until_fresh(self, timeout: float | None = None) -> bool:
        """``wait_until_fresh`` without blocking the loop: True once every source has delivered its
        snapshot and everything it sent is searchable; False on timeout or if the engine failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            step = _FRESHNESS_SLICE if remaining is None else max(0.0, min(_FRESHNESS_SLICE, remaining))
            if await self._off_loop(self._store.wait_until_fresh, step):
                return True
            if self._store.engine.failure is not None or (remaining is not None and remaining <= step):
                return False

    def updates(self) -> UpdateStream:
        """Each epoch's ``StoreUpdate`` (documents indexed and removed, chunks embedded, errors,
        freshness) as an async iterator, from epochs that end after this call::

            async for update in store.updates():
                print(update.indexed, update.lag, update.missed)

        A consumer slower than the engine gets the latest update with the number it skipped in
        ``missed``: the stream holds one update at most and the engine never waits for it. For sync code,
        ``on_update`` still calls back on the engine thread.
        """
        engine = self._store.engine
        return UpdateStream(self._store._updates, lambda: engine.failure)

    # -- the engine's side (engine thread) ------------------------------------------------------

    def _publish_update(self, report: EpochReport, changed: Collection[str], searchable_at: float) -> None:
        """Hand the epoch's update to the open streams (built only when there is one)."""
        try:
            self._build_update(report, changed, searchable_at)
        except Exception:  # a report must never fail the epoch it reports on
            log.exception("cannot publish the update of epoch %s", report.epoch)

    def _build_update(self, report: EpochReport, changed: Collection[str], searchable_at: float) -> None:
        store = self._store
        with store._table.lock:
            embedded = store._table.chunks_embedded
            indexed = sorted(d for d in changed if d in store._table.docs)
        chunks, self._embedded_before = embedded - self._embedded_before, embedded
        if not store._updates.listening or not changed:
            return
        removed = sorted(set(changed).difference(indexed))
        store._updates.publish(
            StoreUpdate(
                epoch=report.epoch,
                indexed=tuple(indexed),
                removed=tuple(removed),
                chunks_embedded=chunks,
                errors=tuple(store._reports.errors(changed)),
                searchable_at=searchable_at,
                lag=self._lag(indexed, searchable_at),
                seconds=report.seconds,
            )
        )

    def _lag(self, doc_ids: Sequence[str], searchable_at: float) -> float | None:
        seen = [ns for feed in self._store.feeds for d in doc_ids if (ns := feed.seen_ns.get(d)) is not None]
        return max(0.0, searchable_at - min(seen) / 1e9) if seen else None

    # -- the threads ----------------------------------------------------------------------------

    async def _off_loop(self, call: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads(), functools.partial(call, *args))

    def _threads(self) -> ThreadPoolExecutor:
        with self._async_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="ragflow-async")
            return self._pool
